//! Trio parity (issue 11): each test mirrors the Trio test named in its
//! name and doc comment, translated to Rust (Trio's `Cancelled` is a
//! checkpoint's `Err(Cancelled)`, its `RuntimeError`s are typed errors).
//!
//! Conventions: exact values and exact event sequences; scheduling is
//! pinned with `Builder::seed` (several seeds where the order of a pass
//! could matter); anything that waits for time uses a `MockClock` with
//! autojump, so no test sleeps for real, except where Trio's rule is about
//! real time: `wait_all_tasks_blocked`'s cushion (tens of milliseconds).

#![allow(non_snake_case)] // test names follow Trio's (test_CapacityLimiter, test_Sequencer)

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use trioxide::sync::{Borrower, CapacityLimiter, ParkError, ParkingLot, TryBorrowError};
use trioxide::testing::{
    memory_stream_one_way_pair, memory_stream_pump, MemoryReceiveStream, MemorySendStream, Sequencer, SequencerError,
};
use trioxide::{
    checkpoint, current_statistics, current_task, current_time, io_error_kind, open_memory_channel, open_nursery,
    sleep, sleep_forever, wait_all_tasks_blocked, BoxError, BrokenResource, Builder, CancelScope, Cancelled,
    IoErrorKind, MockClock, StartError, TaskId, TaskStatus,
};

// ---------------------------------------------------------------------------
// Helpers

/// An append-only event log shared by the tasks of one run.
#[derive(Clone, Default)]
struct Log(Rc<RefCell<Vec<String>>>);

impl Log {
    fn push(&self, event: impl Into<String>) {
        self.0.borrow_mut().push(event.into());
    }

    fn get(&self) -> Vec<String> {
        self.0.borrow().clone()
    }
}

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| s.to_string()).collect()
}

/// A virtual clock that jumps to the next deadline whenever every task is
/// blocked.
fn autojump_clock() -> MockClock {
    let clock = MockClock::new();
    clock.set_autojump_threshold(Some(Duration::ZERO));
    clock
}

/// Whole seconds of virtual time since the start of the run.
fn secs() -> u64 {
    current_time().as_nanos() / 1_000_000_000
}

/// An error of the test's own, standing in for Trio's `KeyError`.
#[derive(Debug, PartialEq)]
struct KeyError(&'static str);

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyError({})", self.0)
    }
}

impl std::error::Error for KeyError {}

fn describe_err(e: &(dyn std::error::Error + 'static)) -> String {
    if e.is::<Cancelled>() {
        "Cancelled".into()
    } else if let Some(s) = e.downcast_ref::<StartError>() {
        format!("StartError::{s:?} ({s})")
    } else if let Some(k) = e.downcast_ref::<KeyError>() {
        format!("{k}")
    } else {
        format!("other: {e}")
    }
}

// ---------------------------------------------------------------------------
// 1. `Nursery::start` in a cancelled caller (Trio's test_nursery_start,
//    the part after "if the call to start() is cancelled")

/// What one `start` in an already cancelled scope gave: `start`'s result,
/// the scope's `cancelled_caught`, the target nursery's result, and
/// whether the child was still a child of the caller when it ended.
struct CancelledStart {
    started: String,
    caught: bool,
    target: String,
    stayed_under_caller: bool,
}

fn start_in_cancelled_caller<F>(seed: u64, child: impl FnOnce(TaskStatus<u32>) -> F + 'static) -> CancelledStart
where
    F: std::future::Future<Output = Result<(), BoxError>> + 'static,
{
    let result: Rc<RefCell<(String, bool)>> = Rc::default();
    let stayed = Rc::new(Cell::new(false));
    let (res, st) = (result.clone(), stayed.clone());
    let out = Builder::new().seed(seed).clock(autojump_clock()).run(open_nursery(move |target| async move {
        let scope = CancelScope::new();
        scope.cancel();
        let caller = current_task().id;
        let r = scope
            .run(async {
                let r = target
                    .start(move |status: TaskStatus<u32>| async move {
                        let r = child(status).await;
                        st.set(current_task().parent == Some(caller));
                        r
                    })
                    .await;
                res.borrow_mut().0 = match &r {
                    Ok(v) => format!("Ok({v})"),
                    Err(e) => format!("Err({})", describe_err(e.as_ref())),
                };
                r
            })
            .await;
        res.borrow_mut().1 = scope.cancelled_caught();
        // The scope's result itself: a caught cancellation is Ok(None).
        match r {
            Ok(_) => Ok::<_, BoxError>(()),
            Err(e) if e.is::<KeyError>() => Ok(()),
            Err(e) => Err(e),
        }
    }));
    let target = match out {
        Ok(v) => format!("Ok({v:?})"),
        Err(e) => format!("Err({e})"),
    };
    let (started, caught) = result.borrow().clone();
    CancelledStart { started, caught, target, stayed_under_caller: stayed.get() }
}

/// Trio: `started_with_no_checkpoint`: "if the task does not execute any
/// checkpoints, and exits, then start() doesn't raise Cancelled, since the
/// task completed successfully"; `assert not cs.cancelled_caught`.
#[test]
fn test_nursery_start_with_cancelled_caller_started_with_no_checkpoint_returns_the_value() {
    for seed in 0..6 {
        let r = start_in_cancelled_caller(seed, |status| async move {
            status.started(42);
            Ok(())
        });
        assert_eq!(r.started, "Ok(42)", "seed {seed}");
        assert!(!r.caught, "seed {seed}: the caller's scope caught no cancellation");
        assert!(r.stayed_under_caller, "seed {seed}: started() in a cancelled caller moves nothing");
        assert_eq!(r.target, "Ok(Some(()))", "seed {seed}");
    }
}

/// Trio: `nothing` (child exiting cleanly before calling started) raises
/// "child exited without calling task_status.started()", also when the
/// caller is cancelled: the wait in `start` is no cancel point.
#[test]
fn test_nursery_start_with_cancelled_caller_child_exiting_without_started_is_not_started() {
    for seed in 0..6 {
        let r = start_in_cancelled_caller(seed, |_status| async move { Ok(()) });
        assert_eq!(
            r.started, "Err(StartError::NotStarted (child exited without calling task_status.started()))",
            "seed {seed}"
        );
        assert!(!r.caught, "seed {seed}");
        assert_eq!(
            r.target, "Err(1 error:\n  [0] child exited without calling task_status.started())",
            "seed {seed}: the error passed through the scope to the nursery"
        );
    }
}

/// Trio: `just_started` (started("hi") then a checkpoint) in a cancelled
/// scope: `start` raises Cancelled, which the scope catches.
#[test]
fn test_nursery_start_with_cancelled_caller_just_started_then_checkpoint_is_cancelled() {
    for seed in 0..6 {
        let r = start_in_cancelled_caller(seed, |status| async move {
            status.started(7);
            checkpoint().await?;
            Ok(())
        });
        assert_eq!(r.started, "Err(Cancelled)", "seed {seed}");
        assert!(r.caught, "seed {seed}");
        assert!(r.stayed_under_caller, "seed {seed}");
        assert_eq!(r.target, "Ok(Some(()))", "seed {seed}");
    }
}

/// Trio: `raise_keyerror_after_started`: "since starting in a cancelled
/// context makes started() a no-op, if the child crashes after calling
/// started(), the error can *still* come out of start()".
#[test]
fn test_nursery_start_with_cancelled_caller_error_after_started_comes_out_of_start() {
    for seed in 0..6 {
        let r = start_in_cancelled_caller(seed, |status| async move {
            status.started(7);
            Err(Box::new(KeyError("whoopsiedaisy")) as BoxError)
        });
        assert_eq!(r.started, "Err(KeyError(whoopsiedaisy))", "seed {seed}");
        assert!(!r.caught, "seed {seed}");
        assert_eq!(r.target, "Ok(Some(()))", "seed {seed}: the error did not reach the target nursery");
    }
}

/// The uncancelled half, for contrast (Trio's `sleep_then_start`): the
/// value comes back after the child's sleep, the child then belongs to the
/// target nursery, which waits for it: t = 1 at `started`, 2 at the end.
#[test]
fn test_nursery_start_sleep_then_start_moves_the_child_into_the_nursery() {
    let log = Log::default();
    let l = log.clone();
    let out = Builder::new().seed(3).clock(autojump_clock()).run(async move {
        let l2 = l.clone();
        open_nursery(move |n| async move {
            let owner = current_task().id;
            let l3 = l2.clone();
            let v = n
                .start(move |status: TaskStatus<u64>| async move {
                    sleep(Duration::from_secs(1)).await?;
                    status.started(secs());
                    sleep(Duration::from_secs(1)).await?;
                    l3.push(format!(
                        "child ends at t={} under the nursery: {}",
                        secs(),
                        current_task().parent == Some(owner)
                    ));
                    Ok::<_, BoxError>(())
                })
                .await?;
            l2.push(format!("start returned {v} at t={}", secs()));
            Ok::<_, BoxError>(())
        })
        .await?;
        l.push(format!("nursery done at t={}", secs()));
        Ok::<_, BoxError>(())
    });
    assert!(out.is_ok());
    assert_eq!(
        log.get(),
        strings(&["start returned 1 at t=1", "child ends at t=2 under the nursery: true", "nursery done at t=2"])
    );
}

// ---------------------------------------------------------------------------
// 2. Parking-lot breakers (Trio's _core/_tests/test_parking_lot.py)

/// Trio's `dummy_task`: reports its own id through `start`, then sleeps
/// until cancelled.
async fn dummy_task(n: &trioxide::Nursery) -> Result<TaskId, BoxError> {
    n.start(|status: TaskStatus<TaskId>| async move {
        status.started(current_task().id);
        sleep_forever().await?;
        Ok::<(), Cancelled>(())
    })
    .await
}

/// test_parking_lot_breaker_basic: breaking twice with the same task lists
/// it twice; parking in a broken lot fails at once.
#[test]
fn test_parking_lot_breaker_basic() {
    let out = Builder::new().seed(1).run(async {
        let lot = ParkingLot::new();
        let me = current_task().id;
        assert_eq!(lot.break_lot(me), 0);
        assert_eq!(lot.broken_by(), vec![me]);
        assert_eq!(lot.break_lot(me), 0);
        assert_eq!(lot.broken_by(), vec![me, me]);
        assert_eq!(lot.first_breaker(), Some(me));
        lot.park().await
    });
    match out {
        Err(ParkError::Broken(b)) => {
            assert_eq!(b.reason, "the parking lot was broken (a lock's owner task ended holding it)")
        }
        other => panic!("expected Broken, got {other:?}"),
    }
}

/// test_parking_lot_break_parking_tasks: a task registered as breaker exits
/// (its scope is cancelled) while another task is parked: the parked task
/// fails with Broken, and the lot names the breaker.
#[test]
fn test_parking_lot_break_parking_tasks() {
    for seed in 0..4 {
        let lot = Rc::new(ParkingLot::new());
        let breaker = Rc::new(Cell::new(None));
        let (l, b) = (lot.clone(), breaker.clone());
        let out = Builder::new().seed(seed).run(open_nursery(move |n| async move {
            let cs = CancelScope::new();
            let (l1, cs1) = (l.clone(), cs.clone());
            n.start_soon(async move {
                b.set(Some(current_task().id));
                l1.add_breaker(current_task().id)?;
                cs1.run(sleep_forever()).await?;
                Ok::<_, BoxError>(())
            })?;
            wait_all_tasks_blocked().await?;
            let l2 = l.clone();
            n.start_soon(async move { l2.park().await })?;
            wait_all_tasks_blocked().await?;
            assert_eq!(l.len(), 1);
            cs.cancel();
            Ok::<_, BoxError>(())
        }));
        let errors = out.expect_err("the parker failed").into_errors();
        let got: Vec<String> = errors.iter().map(|e| format!("{:?}", e.downcast_ref::<ParkError>())).collect();
        assert_eq!(
            got,
            ["Some(Broken(BrokenResource { reason: \"the parking lot was broken (a lock's owner task ended holding it)\" }))"],
            "seed {seed}"
        );
        assert_eq!(lot.broken_by(), vec![breaker.get().unwrap()], "seed {seed}");
    }
}

/// test_parking_lot_breaker_registration: a task can be registered twice
/// and removed twice, a third removal finds nothing; registering on a lot
/// that is already broken is fine, and the registered task's end is added
/// to `broken_by`; breaking a fresh lot with an exited task is fine.
#[test]
fn test_parking_lot_breaker_registration() {
    let out = Builder::new().seed(2).run(async {
        let lot = ParkingLot::new();
        let me = current_task().id;
        assert!(!lot.remove_breaker(me));
        lot.add_breaker(me)?;
        lot.add_breaker(me)?;
        assert!(lot.remove_breaker(me));
        assert!(lot.remove_breaker(me));
        assert!(!lot.remove_breaker(me));

        lot.break_lot(me);
        let lot = Rc::new(lot);
        let l = lot.clone();
        let child = open_nursery(move |n| async move {
            let child = dummy_task(&n).await?;
            l.add_breaker(child)?;
            n.cancel_scope().cancel();
            Ok::<_, BoxError>(child)
        })
        .await?
        .expect("the body finished");
        assert_eq!(lot.broken_by(), vec![me, child]);

        let fresh = ParkingLot::new();
        fresh.break_lot(child);
        assert_eq!(fresh.broken_by(), vec![child]);
        Ok::<_, BoxError>(())
    });
    out.unwrap();
}

/// test_parking_lot_breaker_rebreak: breaking a broken lot again with
/// another task appends it.
#[test]
fn test_parking_lot_breaker_rebreak() {
    Builder::new()
        .seed(3)
        .run(async {
            let lot = Rc::new(ParkingLot::new());
            let me = current_task().id;
            lot.break_lot(me);
            let l = lot.clone();
            let child = open_nursery(move |n| async move {
                let child = dummy_task(&n).await?;
                assert_eq!(l.break_lot(child), 0);
                n.cancel_scope().cancel();
                Ok::<_, BoxError>(child)
            })
            .await?
            .expect("the body finished");
            assert_eq!(lot.broken_by(), vec![me, child]);
            Ok::<_, BoxError>(())
        })
        .unwrap();
}

/// test_parking_lot_multiple_breakers_exit: three registered breakers
/// exit; all three are listed (the order they exit in is the scheduler's).
#[test]
fn test_parking_lot_multiple_breakers_exit() {
    for seed in 0..4 {
        Builder::new()
            .seed(seed)
            .run(async {
                let lot = Rc::new(ParkingLot::new());
                let l = lot.clone();
                let children = open_nursery(move |n| async move {
                    let mut children = Vec::new();
                    for _ in 0..3 {
                        let c = dummy_task(&n).await?;
                        l.add_breaker(c)?;
                        children.push(c);
                    }
                    n.cancel_scope().cancel();
                    Ok::<_, BoxError>(children)
                })
                .await?
                .expect("the body finished");
                let mut got = lot.broken_by();
                got.sort_by_key(|t| t.as_u64());
                let mut want = children;
                want.sort_by_key(|t| t.as_u64());
                assert_eq!(got, want);
                assert_eq!(got.len(), 3);
                Ok::<_, BoxError>(())
            })
            .unwrap();
    }
}

/// test_parking_lot_breaker_register_exited_task: registering a task that
/// has exited fails with BrokenResource "Attempted to add already exited
/// task as lot breaker" and registers nothing (removing it finds nothing;
/// the lot stays unbroken).
#[test]
fn test_parking_lot_breaker_register_exited_task() {
    Builder::new()
        .seed(4)
        .run(async {
            let lot = ParkingLot::new();
            let child = open_nursery(|n| async move {
                let child = dummy_task(&n).await?;
                n.cancel_scope().cancel();
                Ok::<_, BoxError>(child)
            })
            .await?
            .expect("the body finished");
            let err = lot.add_breaker(child).unwrap_err();
            assert_eq!(err, BrokenResource { reason: "Attempted to add already exited task as lot breaker" });
            assert_eq!(err.to_string(), "broken resource: Attempted to add already exited task as lot breaker");
            assert!(!lot.remove_breaker(child), "no stale registration was left");
            assert!(!lot.is_broken());
            Ok::<_, BoxError>(())
        })
        .unwrap();
}

/// test_parking_lot_break_itself: breaking a lot with the task that is
/// parked in it wakes that task with Broken.
#[test]
fn test_parking_lot_break_itself() {
    let lot = Rc::new(ParkingLot::new());
    let l = lot.clone();
    let out = Builder::new().seed(5).run(open_nursery(move |n| async move {
        let l2 = l.clone();
        let child = n
            .start(move |status: TaskStatus<TaskId>| async move {
                status.started(current_task().id);
                l2.park().await
            })
            .await?;
        wait_all_tasks_blocked().await?;
        assert_eq!(l.break_lot(child), 1);
        Ok::<_, BoxError>(child)
    }));
    let errors = out.expect_err("the child failed").into_errors();
    assert_eq!(errors.len(), 1);
    assert!(matches!(errors[0].downcast_ref::<ParkError>(), Some(ParkError::Broken(_))));
    assert_eq!(lot.broken_by().len(), 1);
}

// ---------------------------------------------------------------------------
// 3. Channel statistics (Trio's _tests/test_channel.py::test_statistics)

/// test_statistics, every step of it, with trioxide's high-water mark
/// checked alongside: it follows the buffer up, stays at its highest when
/// the buffer drains, and counts neither blocked senders (their values are
/// not in the buffer) nor values handed straight to a blocked receiver.
#[test]
fn test_statistics() {
    for seed in 0..4 {
        let out = Builder::new().seed(seed).run(async {
            let (s, r) = open_memory_channel::<()>(2);
            assert_eq!(s.statistics(), r.statistics());
            let st = s.statistics();
            assert_eq!((st.current_buffer_used, st.peak_buffer_used, st.max_buffer_size), (0, 0, 2));
            assert_eq!((st.open_send_channels, st.open_receive_channels), (1, 1));
            assert_eq!((st.tasks_waiting_send, st.tasks_waiting_receive), (0, 0));

            s.try_send(()).unwrap();
            assert_eq!((s.statistics().current_buffer_used, s.statistics().peak_buffer_used), (1, 1));

            let s2 = s.clone();
            assert_eq!(s.statistics().open_send_channels, 2);
            s.close();
            assert_eq!(s2.statistics().open_send_channels, 1);

            let r2 = r.clone();
            assert_eq!(s2.statistics().open_receive_channels, 2);
            r2.close();
            assert_eq!(s2.statistics().open_receive_channels, 1);

            let s2 = Rc::new(s2);
            let s3 = s2.clone();
            open_nursery(move |n| async move {
                s3.try_send(()).unwrap(); // fill up the buffer
                assert_eq!(s3.statistics().current_buffer_used, 2);
                for _ in 0..2 {
                    let s4 = s3.clone();
                    n.start_soon(async move { s4.send(()).await.map_err(BoxError::from) })?;
                }
                wait_all_tasks_blocked().await?;
                assert_eq!(s3.statistics().tasks_waiting_send, 2);
                assert_eq!(s3.statistics().peak_buffer_used, 2, "blocked senders are not in the buffer");
                n.cancel_scope().cancel();
                Ok::<_, BoxError>(())
            })
            .await?;
            assert_eq!(s2.statistics().tasks_waiting_send, 0);

            // Empty out the buffer again: the mark stays at 2.
            let mut drained = 0;
            while r.try_receive().is_ok() {
                drained += 1;
            }
            assert_eq!(drained, 2);
            let st = s2.statistics();
            assert_eq!((st.current_buffer_used, st.peak_buffer_used), (0, 2));

            let r = Rc::new(r);
            let (r3, s3) = (r.clone(), s2.clone());
            open_nursery(move |n| async move {
                let r4 = r3.clone();
                n.start_soon(async move { r4.receive().await.map(|_| ()) })?;
                wait_all_tasks_blocked().await?;
                assert_eq!(s3.statistics().tasks_waiting_receive, 1);
                n.cancel_scope().cancel();
                Ok::<_, BoxError>(())
            })
            .await?;
            assert_eq!(s2.statistics().tasks_waiting_receive, 0);
            Ok::<_, BoxError>(())
        });
        out.unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}

/// The high-water mark on a rendezvous channel stays 0 (every value goes
/// from a sender to a receiver directly); on a bounded channel whose
/// receiver moves a blocked sender's value in, it never passes the
/// capacity.
#[test]
fn test_statistics_peak_buffer_used_is_a_high_water_mark() {
    let out = Builder::new().seed(7).run(open_nursery(|n| async move {
        let (tx, rx) = open_memory_channel::<u32>(0);
        let tx = Rc::new(tx);
        let t = tx.clone();
        n.start_soon(async move {
            for i in 0..5 {
                t.send(i).await?;
            }
            Ok::<_, BoxError>(())
        })?;
        let mut got = Vec::new();
        for _ in 0..5 {
            got.push(rx.receive().await?);
        }
        assert_eq!(got, [0, 1, 2, 3, 4]);
        assert_eq!(tx.statistics().peak_buffer_used, 0);

        let (tx, rx) = open_memory_channel::<u32>(3);
        let tx = Rc::new(tx);
        let t = tx.clone();
        n.start_soon(async move {
            for i in 0..6 {
                t.send(i).await?;
            }
            Ok::<_, BoxError>(())
        })?;
        wait_all_tasks_blocked().await?;
        let st = tx.statistics();
        assert_eq!((st.current_buffer_used, st.peak_buffer_used, st.tasks_waiting_send), (3, 3, 1));
        for want in 0..6 {
            assert_eq!(rx.receive().await?, want);
        }
        assert_eq!(tx.statistics().peak_buffer_used, 3);
        Ok::<_, BoxError>(())
    }));
    out.unwrap();
}

// ---------------------------------------------------------------------------
// 4. CapacityLimiter with 0 total tokens (Trio PR #3321, test_sync.py's
//    test_CapacityLimiter_change_total_tokens and its zero case)

/// A limiter of 0 tokens pauses borrowing: five borrowers queue (a try
/// fails with WouldBlock), growing the total to 2 hands tokens to the two
/// oldest, to 5 to the rest, in arrival order; pausing again while tokens
/// are held takes none away, tokens given back are not handed on, and
/// resuming serves the waiter.
#[test]
fn test_CapacityLimiter_zero_total_tokens_pauses_and_resumes_in_fifo_order() {
    for seed in 0..6 {
        let log = Log::default();
        let l = log.clone();
        let out = Builder::new().seed(seed).run(async move {
            let c = Rc::new(CapacityLimiter::new(0));
            assert_eq!((c.total_tokens(), c.available_tokens()), (0, 0));
            assert!(matches!(c.try_acquire(), Err(TryBorrowError::WouldBlock)));
            let b: Vec<Borrower> = (0..5).map(|_| Borrower::unique()).collect();
            let sorted = |v: &[usize]| {
                let mut out: Vec<Borrower> = v.iter().map(|&i| b[i]).collect();
                out.sort();
                out
            };
            let (c2, b2, l2) = (c.clone(), b.clone(), l.clone());
            open_nursery(move |n| async move {
                for (i, &bi) in b2.iter().enumerate() {
                    let (c3, l3) = (c2.clone(), l2.clone());
                    n.start_soon(async move {
                        c3.acquire_on_behalf_of(bi).await?.forget();
                        l3.push(format!("b{i}"));
                        Ok::<_, BoxError>(())
                    })?;
                    wait_all_tasks_blocked().await?;
                }
                let st = c2.statistics();
                assert_eq!((st.borrowed_tokens, st.total_tokens, st.tasks_waiting), (0, 0, 5));
                assert!(st.borrowers.is_empty());
                assert!(l2.get().is_empty(), "nobody borrowed from an empty sack");

                c2.set_total_tokens(2);
                assert_eq!(c2.statistics().borrowers, sorted(&[0, 1]), "handed over at once, oldest first");
                assert_eq!(c2.statistics().tasks_waiting, 3);
                wait_all_tasks_blocked().await?;
                c2.set_total_tokens(5);
                assert_eq!(c2.statistics().borrowers, sorted(&[0, 1, 2, 3, 4]));
                wait_all_tasks_blocked().await?;

                // Pause while all five hold tokens: nobody loses one.
                c2.set_total_tokens(0);
                assert_eq!((c2.borrowed_tokens(), c2.available_tokens()), (5, 0));
                let late = Borrower::unique();
                let (c3, l3) = (c2.clone(), l2.clone());
                n.start_soon(async move {
                    c3.acquire_on_behalf_of(late).await?.forget();
                    l3.push("late");
                    Ok::<_, BoxError>(())
                })?;
                wait_all_tasks_blocked().await?;
                for &bi in &b2 {
                    c2.release_on_behalf_of(bi)?;
                }
                wait_all_tasks_blocked().await?;
                let st = c2.statistics();
                assert_eq!((st.borrowed_tokens, st.tasks_waiting), (0, 1), "given-back tokens are not handed on");
                c2.set_total_tokens(1);
                assert_eq!(c2.statistics().borrowers, vec![late]);
                Ok::<_, BoxError>(())
            })
            .await?;
            Ok::<_, BoxError>(())
        });
        out.unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        // Woken together, a batch runs forwards or reversed (rule S2): the
        // hand-over order is checked above; here, who ran in which round.
        let got = log.get();
        let mut rounds = vec![got[..2].to_vec(), got[2..5].to_vec(), got[5..].to_vec()];
        rounds.iter_mut().for_each(|r| r.sort());
        assert_eq!(rounds, [strings(&["b0", "b1"]), strings(&["b2", "b3", "b4"]), strings(&["late"])], "seed {seed}");
    }
}

/// A waiter cancelled while borrowing is paused leaves no trace: growing
/// the total later serves the next waiter, and the cancelled borrower may
/// borrow again. Virtual time: the cancel is a 1 s timeout.
#[test]
fn test_CapacityLimiter_zero_total_tokens_cancelled_waiter_leaves_no_trace() {
    let out = Builder::new().seed(11).clock(autojump_clock()).run(open_nursery(|n| async move {
        let c = Rc::new(CapacityLimiter::new(0));
        let (first, second) = (Borrower::unique(), Borrower::unique());
        let c1 = c.clone();
        n.start_soon(async move {
            let r = trioxide::move_on_after(Duration::from_secs(1), c1.acquire_on_behalf_of(first)).await?;
            assert!(r.is_none(), "cancelled by the timeout at t={}", secs());
            assert_eq!(secs(), 1);
            Ok::<_, BoxError>(())
        })?;
        wait_all_tasks_blocked().await?;
        let c2 = c.clone();
        n.start_soon(async move {
            c2.acquire_on_behalf_of(second).await?.forget();
            Ok::<_, BoxError>(())
        })?;
        wait_all_tasks_blocked().await?;
        assert_eq!(c.statistics().tasks_waiting, 2);
        sleep(Duration::from_secs(2)).await?;
        assert_eq!(c.statistics().tasks_waiting, 1, "the cancelled waiter left");
        c.set_total_tokens(1);
        assert_eq!(c.statistics().borrowers, vec![second]);
        c.set_total_tokens(2);
        c.try_acquire_on_behalf_of(first)?.forget();
        let mut want = vec![first, second];
        want.sort();
        assert_eq!(c.statistics().borrowers, want);
        Ok::<_, BoxError>(())
    }));
    out.unwrap();
}

// ---------------------------------------------------------------------------
// 5a. Sequencer (Trio's _tests/test_testing.py)

/// test_Sequencer: two tasks interleave by sequence number; the main task's
/// turn 5 waits until turn 4 ended; reusing a position is an error.
#[test]
fn test_Sequencer() {
    for seed in 0..6 {
        let record = Log::default();
        let r = record.clone();
        let out = Builder::new().seed(seed).run(async move {
            let seq = Rc::new(Sequencer::new());
            let (s, r2) = (seq.clone(), r.clone());
            open_nursery(move |n| async move {
                let (s1, r1) = (s.clone(), r2.clone());
                n.start_soon(async move {
                    for t in [1, 3, 4] {
                        let _turn = s1.turn(t).await?;
                        r1.push(format!("f1 {t}"));
                    }
                    Ok::<_, BoxError>(())
                })?;
                let (s2, r3) = (s.clone(), r2.clone());
                n.start_soon(async move {
                    for t in [0, 2] {
                        let _turn = s2.turn(t).await?;
                        r3.push(format!("f2 {t}"));
                    }
                    Ok::<_, BoxError>(())
                })?;
                let _turn = s.turn(5).await?;
                wait_all_tasks_blocked().await?;
                assert_eq!(r2.get(), strings(&["f2 0", "f1 1", "f2 2", "f1 3", "f1 4"]));
                Ok::<_, BoxError>(())
            })
            .await?;
            let seq = Sequencer::new();
            drop(seq.turn(0).await?);
            assert_eq!(seq.turn(0).await.unwrap_err(), SequencerError::Reused(0));
            assert_eq!(seq.run(1, async { "one" }).await, Ok("one"));
            Ok::<_, BoxError>(())
        });
        out.unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(record.get().len(), 5);
    }
}

/// test_Sequencer_cancel: a task whose wait is cancelled breaks the
/// sequencer: it gets "Sequencer wait cancelled" (not a cancellation: its
/// scope catches nothing), the other waiter gets "sequence broken!", and
/// so does a late arrival.
#[test]
fn test_Sequencer_cancel() {
    for seed in 0..6 {
        let record = Log::default();
        let r = record.clone();
        let out = Builder::new().seed(seed).run(async move {
            let seq = Rc::new(Sequencer::new());
            let (s, r2) = (seq.clone(), r.clone());
            open_nursery(move |n| async move {
                for i in [1, 2] {
                    let (s, r) = (s.clone(), r2.clone());
                    n.start_soon(async move {
                        let scope = CancelScope::new();
                        if i == 1 {
                            scope.cancel();
                        }
                        let got = scope
                            .run(async { Ok::<_, BoxError>(s.turn(i).await.map(|_| ()).map_err(|e| e.to_string())) })
                            .await?;
                        r.push(format!("seq({i}) {got:?} caught={}", scope.cancelled_caught()));
                        Ok::<_, BoxError>(())
                    })?;
                }
                let turn = s.turn(0).await?;
                wait_all_tasks_blocked().await?;
                drop(turn);
                Ok::<_, BoxError>(())
            })
            .await?;
            assert_eq!(seq.turn(3).await.unwrap_err(), SequencerError::Broken);
            Ok::<_, BoxError>(())
        });
        out.unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(
            record.get(),
            strings(&[
                "seq(1) Some(Err(\"Sequencer wait cancelled -- sequence broken\")) caught=false",
                "seq(2) Some(Err(\"sequence broken!\")) caught=false",
            ]),
            "seed {seed}"
        );
    }
}

/// Rust's extra way to abandon a wait: dropping the turn future while it
/// waits breaks the sequencer as a cancelled wait does (else position 2
/// would wait forever for a turn 1 that can no longer happen).
#[test]
fn test_Sequencer_dropped_wait_breaks_the_sequence() {
    let out = Builder::new().seed(1).run(async {
        let seq = Sequencer::new();
        {
            let mut wait = std::pin::pin!(seq.turn(1));
            let polled = std::future::poll_fn(|cx| std::task::Poll::Ready(wait.as_mut().poll(cx).is_pending())).await;
            assert!(polled, "turn 1 waits for turn 0");
        }
        assert_eq!(seq.turn(0).await.unwrap_err(), SequencerError::Broken);
        Ok::<_, BoxError>(())
    });
    out.unwrap();
}

// ---------------------------------------------------------------------------
// 5b. Memory-stream hooks and memory_stream_pump
//     (Trio's testing/_tests/test_memory_streams.py)

/// test_memory_stream_pump: nothing to move is a no-op (false); everything,
/// or one byte at a time with max_bytes=1; the end of the data once the
/// sender closed.
#[test]
fn test_memory_stream_pump() {
    Builder::new()
        .seed(1)
        .run(async {
            let mss = MemorySendStream::new();
            let mrs = MemoryReceiveStream::new();
            let mut buf = [0u8; 10];
            assert!(!memory_stream_pump(&mss, &mrs, None)?);

            mss.send_all(b"123").await?;
            assert!(memory_stream_pump(&mss, &mrs, None)?);
            let n = mrs.receive_some(&mut buf).await?;
            assert_eq!(&buf[..n], b"123");

            mss.send_all(b"456").await?;
            assert!(memory_stream_pump(&mss, &mrs, Some(1))?);
            let n = mrs.receive_some(&mut buf).await?;
            assert_eq!(&buf[..n], b"4");
            assert!(memory_stream_pump(&mss, &mrs, Some(1))?);
            assert!(memory_stream_pump(&mss, &mrs, Some(1))?);
            assert!(!memory_stream_pump(&mss, &mrs, Some(1))?);
            let n = mrs.receive_some(&mut buf).await?;
            assert_eq!(&buf[..n], b"56");

            mss.close();
            assert!(memory_stream_pump(&mss, &mrs, None)?);
            assert_eq!(mrs.receive_some(&mut buf).await?, 0);

            // Pumping into a closed receiving end is BrokenResource, and
            // loses nothing.
            let (mss, mrs) = (MemorySendStream::new(), MemoryReceiveStream::new());
            mss.send_all(b"kept").await?;
            mrs.close();
            let err = memory_stream_pump(&mss, &mrs, None).unwrap_err();
            assert_eq!(io_error_kind(&err), Some(IoErrorKind::Broken));
            assert_eq!(err.to_string(), "broken resource: MemoryReceiveStream was closed");
            assert_eq!(mss.get_data_nowait(None)?, b"kept");
            Ok::<_, BoxError>(())
        })
        .unwrap();
}

/// test_MemorySendStream (the hooks part, and get_data / get_data_nowait):
/// the send_all hook runs after the data is in the buffer (it can take
/// it), each hook runs once per call, the close hook on every close.
#[test]
fn test_memory_stream_hooks_send_side() {
    Builder::new()
        .seed(2)
        .run(async {
            let mss = MemorySendStream::new();
            mss.send_all(b"123").await?;
            assert_eq!(mss.get_data_nowait(Some(1))?, b"1");
            assert_eq!(mss.get_data_nowait(None)?, b"23");
            assert_eq!(mss.get_data_nowait(None).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
            assert_eq!(mss.get_data_nowait(Some(0)).unwrap_err().kind(), std::io::ErrorKind::InvalidInput);
            mss.send_all(b"456").await?;
            assert_eq!(mss.get_data(None).await?, b"456");

            let record = Log::default();
            let mss2 = MemorySendStream::new();
            let r = record.clone();
            mss2.set_send_all_hook(move |s| {
                let r = r.clone();
                Box::pin(async move {
                    // The hook runs after send_all did its work.
                    assert_eq!(s.get_data_nowait(None)?, b"abc");
                    r.push("send_all_hook");
                    Ok(())
                })
            });
            let r = record.clone();
            mss2.set_wait_send_all_might_not_block_hook(move |_| {
                r.push("wait_send_all_might_not_block_hook");
                Box::pin(async { Ok(()) })
            });
            let r = record.clone();
            mss2.set_close_hook(move |_| r.push("close_hook"));
            mss2.send_all(b"abc").await?;
            mss2.wait_send_all_might_not_block().await?;
            mss2.close();
            drop(mss2); // dropping closes again
            assert_eq!(
                record.get(),
                strings(&["send_all_hook", "wait_send_all_might_not_block_hook", "close_hook", "close_hook"])
            );

            // A hook's error is send_all's.
            let mss3 = MemorySendStream::new();
            mss3.set_send_all_hook(|_| Box::pin(async { Err(std::io::Error::other("hook failed")) }));
            assert_eq!(mss3.send_all(b"x").await.unwrap_err().to_string(), "hook failed");
            mss3.clear_hooks();
            mss3.send_all(b"y").await?;
            assert_eq!(mss3.get_data_nowait(None)?, b"xy");
            Ok::<_, BoxError>(())
        })
        .unwrap();
}

/// test_MemoryReceiveStream (put_data / put_eof and the hooks): the
/// receive_some hook runs before the buffer is read, so what it puts in
/// comes out of the same call; put_data after put_eof is ClosedResource;
/// the close hook runs on close; a closed end's receive is ClosedResource.
#[test]
fn test_memory_stream_hooks_receive_side() {
    Builder::new()
        .seed(3)
        .run(async {
            let mut buf = [0u8; 10];
            let mrs = MemoryReceiveStream::new();
            mrs.put_data(b"abc")?;
            let n = mrs.receive_some(&mut buf[..1]).await?;
            assert_eq!(&buf[..n], b"a");
            let n = mrs.receive_some(&mut buf).await?;
            assert_eq!(&buf[..n], b"bc");
            mrs.put_data(b"def")?;
            mrs.put_eof();
            mrs.put_eof();
            let n = mrs.receive_some(&mut buf).await?;
            assert_eq!(&buf[..n], b"def");
            assert_eq!(mrs.receive_some(&mut buf).await?, 0);
            assert_eq!(mrs.receive_some(&mut buf).await?, 0);
            let err = mrs.put_data(b"---").unwrap_err();
            assert_eq!(io_error_kind(&err), Some(IoErrorKind::Closed));

            let record = Log::default();
            let mrs2 = MemoryReceiveStream::new();
            mrs2.set_receive_some_hook(|r| Box::pin(async move { r.put_data(b"xxx") }));
            let r = record.clone();
            mrs2.set_close_hook(move |_| r.push("closed"));
            mrs2.put_data(b"yyy")?;
            let n = mrs2.receive_some(&mut buf).await?;
            assert_eq!(&buf[..n], b"yyyxxx");
            let n = mrs2.receive_some(&mut buf).await?;
            assert_eq!(&buf[..n], b"xxx");
            let n = mrs2.receive_some(&mut buf).await?;
            assert_eq!(&buf[..n], b"xxx");
            mrs2.close();
            assert_eq!(record.get(), strings(&["closed"]));
            let err = mrs2.receive_some(&mut buf).await.unwrap_err();
            assert_eq!(io_error_kind(&err), Some(IoErrorKind::Closed));
            Ok::<_, BoxError>(())
        })
        .unwrap();
}

/// A slow link built from hooks and the pump (Trio's memory_stream_pair
/// docstring): bytes cross one per second of virtual time, from a pump
/// task; the receive hook is not needed. "hello" arrives at t = 1..5.
#[test]
fn test_memory_stream_pump_slow_link_in_virtual_time() {
    let log = Log::default();
    let l = log.clone();
    let out = Builder::new().seed(4).clock(autojump_clock()).run(open_nursery(move |n| async move {
        let tx = Rc::new(MemorySendStream::new());
        let rx = Rc::new(MemoryReceiveStream::new());
        let (t, r) = (tx.clone(), rx.clone());
        n.start_soon(async move {
            loop {
                sleep(Duration::from_secs(1)).await?;
                if memory_stream_pump(&t, &r, Some(1))? && r.buffered() == 0 {
                    return Ok::<_, BoxError>(()); // the end of the data crossed
                }
            }
        })?;
        tx.send_all(b"hello").await?;
        tx.close();
        let mut buf = [0u8; 8];
        loop {
            let n = rx.receive_some(&mut buf).await?;
            l.push(format!("t={} {:?}", secs(), std::str::from_utf8(&buf[..n])?));
            if n == 0 {
                break;
            }
        }
        Ok::<_, BoxError>(())
    }));
    out.unwrap();
    assert_eq!(log.get(), strings(&["t=1 \"h\"", "t=2 \"e\"", "t=3 \"l\"", "t=4 \"l\"", "t=5 \"o\"", "t=6 \"\""]));
}

/// memory_stream_one_way_pair exists and shares one buffer: what is sent
/// is receivable at once, without a pump (Trio's default pump hook).
#[test]
fn test_memory_stream_one_way_pair() {
    Builder::new()
        .seed(5)
        .run(async {
            let (tx, rx) = memory_stream_one_way_pair();
            tx.send_all(b"abc").await?;
            assert_eq!(rx.buffered(), 3);
            let mut buf = [0u8; 8];
            assert_eq!(rx.receive_some(&mut buf).await?, 3);
            tx.close();
            assert_eq!(rx.receive_some(&mut buf).await?, 0);
            Ok::<_, BoxError>(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------
// 6. Locks built from channels keep FIFO order (Trio's
//    _tests/test_sync.py::test_generic_lock_fifo_fairness, every factory)

/// Trio's lock-like objects: `acquire` waits (a checkpoint), `release`
/// never does.
trait LockLike: 'static {
    async fn acquire(&self) -> Result<(), BoxError>;
    fn release(&self);
}

/// Trio's `ChannelLock1(capacity)`: the buffer holds one value per holder,
/// pre-filled so that exactly one slot is free; acquiring is sending into
/// it, releasing is taking one value out.
struct ChannelLock1 {
    tx: trioxide::channel::MemorySendChannel<()>,
    rx: trioxide::channel::MemoryReceiveChannel<()>,
}

impl ChannelLock1 {
    fn new(capacity: usize) -> ChannelLock1 {
        let (tx, rx) = open_memory_channel(capacity);
        for _ in 0..capacity - 1 {
            tx.try_send(()).expect("the buffer has room for capacity - 1 values");
        }
        ChannelLock1 { tx, rx }
    }
}

impl LockLike for ChannelLock1 {
    async fn acquire(&self) -> Result<(), BoxError> {
        Ok(self.tx.send(()).await?)
    }
    fn release(&self) {
        self.rx.try_receive().expect("the holder's value is in the buffer");
    }
}

/// Trio's `ChannelLock2`: a buffer of 10 holding the one token; acquiring
/// is receiving it, releasing is sending it back.
struct ChannelLock2 {
    tx: trioxide::channel::MemorySendChannel<()>,
    rx: trioxide::channel::MemoryReceiveChannel<()>,
}

impl ChannelLock2 {
    fn new() -> ChannelLock2 {
        let (tx, rx) = open_memory_channel(10);
        tx.try_send(()).expect("an empty buffer of 10 has room");
        ChannelLock2 { tx, rx }
    }
}

impl LockLike for ChannelLock2 {
    async fn acquire(&self) -> Result<(), BoxError> {
        Ok(self.rx.receive().await?)
    }
    fn release(&self) {
        self.tx.try_send(()).expect("the buffer has room for the token");
    }
}

/// Trio's `ChannelLock3`: a rendezvous channel. The first acquirer takes
/// the lock with a plain checkpoint; later ones send and wait until the
/// holder's release receives from them (the hand-over).
struct ChannelLock3 {
    tx: trioxide::channel::MemorySendChannel<()>,
    rx: trioxide::channel::MemoryReceiveChannel<()>,
    acquired: Cell<bool>,
}

impl ChannelLock3 {
    fn new() -> ChannelLock3 {
        let (tx, rx) = open_memory_channel(0);
        ChannelLock3 { tx, rx, acquired: Cell::new(false) }
    }
}

impl LockLike for ChannelLock3 {
    async fn acquire(&self) -> Result<(), BoxError> {
        if self.acquired.get() {
            self.tx.send(()).await?;
        } else {
            self.acquired.set(true);
            checkpoint().await?;
        }
        Ok(())
    }
    fn release(&self) {
        if self.rx.try_receive().is_err() {
            assert!(self.acquired.get());
            self.acquired.set(false);
        }
    }
}

impl LockLike for trioxide::Lock {
    async fn acquire(&self) -> Result<(), BoxError> {
        trioxide::Lock::acquire(self).await?.leak();
        Ok(())
    }
    fn release(&self) {
        trioxide::Lock::release(self).expect("the releasing task owns the lock");
    }
}

impl LockLike for trioxide::Semaphore {
    async fn acquire(&self) -> Result<(), BoxError> {
        trioxide::Semaphore::acquire(self).await?.forget();
        Ok(())
    }
    fn release(&self) {
        trioxide::Semaphore::release(self).expect("a semaphore of 1 has room for the unit");
    }
}

impl LockLike for CapacityLimiter {
    async fn acquire(&self) -> Result<(), BoxError> {
        CapacityLimiter::acquire(self).await?.forget();
        Ok(())
    }
    fn release(&self) {
        self.release_on_behalf_of(Borrower::current_task()).expect("the releasing task holds a token");
    }
}

/// Trio's `LOOPS`: each task takes the lock this many times.
const FAIRNESS_LOOPS: usize = 5;

/// Trio's test_generic_lock_fifo_fairness for one lock and one seed: three
/// tasks, each acquiring and releasing `FAIRNESS_LOOPS` times with no other
/// checkpoint. Returns (the order the tasks first ran in, the record of
/// acquisitions).
fn lock_fifo_record<L: LockLike>(seed: u64, lock: L) -> (Vec<u32>, Vec<u32>) {
    let lock = Rc::new(lock);
    let initial: Rc<RefCell<Vec<u32>>> = Rc::default();
    let record: Rc<RefCell<Vec<u32>>> = Rc::default();
    let (i, r) = (initial.clone(), record.clone());
    Builder::new()
        .seed(seed)
        .run(open_nursery(move |n| async move {
            for name in [1, 2, 3] {
                let (lock, initial, record) = (lock.clone(), i.clone(), r.clone());
                n.start_soon(async move {
                    initial.borrow_mut().push(name);
                    for _ in 0..FAIRNESS_LOOPS {
                        lock.acquire().await?;
                        record.borrow_mut().push(name);
                        lock.release();
                    }
                    Ok::<_, BoxError>(())
                })?;
            }
            Ok::<_, BoxError>(())
        }))
        .expect("no task fails")
        .expect("nothing is cancelled");
    let initial = initial.borrow().clone();
    let record = record.borrow().clone();
    (initial, record)
}

/// The assertion of Trio's test: after the first round, whose order the
/// scheduler picks, every round repeats the order the tasks first ran in.
fn assert_fifo_fair<L: LockLike>(what: &str, make: impl Fn() -> L) {
    for seed in 1..=8 {
        let (initial, record) = lock_fifo_record(seed, make());
        assert_eq!(record.len(), 3 * FAIRNESS_LOOPS, "{what}, seed {seed}");
        for (round, chunk) in record.chunks(3).enumerate() {
            assert_eq!(chunk, &initial[..], "{what}, seed {seed}, round {round}: {record:?}");
        }
    }
}

#[test]
fn test_generic_lock_fifo_fairness_ChannelLock1_10() {
    assert_fifo_fair("ChannelLock1(10)", || ChannelLock1::new(10));
}

#[test]
fn test_generic_lock_fifo_fairness_ChannelLock1_1() {
    assert_fifo_fair("ChannelLock1(1)", || ChannelLock1::new(1));
}

#[test]
fn test_generic_lock_fifo_fairness_ChannelLock2() {
    assert_fifo_fair("ChannelLock2", ChannelLock2::new);
}

#[test]
fn test_generic_lock_fifo_fairness_ChannelLock3() {
    assert_fifo_fair("ChannelLock3", ChannelLock3::new);
}

#[test]
fn test_generic_lock_fifo_fairness_Lock() {
    assert_fifo_fair("Lock", trioxide::Lock::new);
}

#[test]
fn test_generic_lock_fifo_fairness_Semaphore() {
    assert_fifo_fair("Semaphore(1)", || trioxide::Semaphore::new(1));
}

#[test]
fn test_generic_lock_fifo_fairness_CapacityLimiter() {
    assert_fifo_fair("CapacityLimiter(1)", || CapacityLimiter::new(1));
}

/// Issue 11's regression: with one seed, a lock built on a channel and
/// `Lock` give the very same record (before the fix, `ChannelLock1(1)`
/// gave `[1, 1, 1, 1, 1, 2, 2, ...]`: the channel budget let the releasing
/// task take the lock back at once).
#[test]
fn test_generic_lock_fifo_fairness_channel_lock_orders_like_Lock() {
    for seed in 1..=8 {
        let (_, lock) = lock_fifo_record(seed, trioxide::Lock::new());
        for (what, (_, channel)) in [
            ("ChannelLock1(1)", lock_fifo_record(seed, ChannelLock1::new(1))),
            ("ChannelLock1(10)", lock_fifo_record(seed, ChannelLock1::new(10))),
            ("ChannelLock2", lock_fifo_record(seed, ChannelLock2::new())),
            ("ChannelLock3", lock_fifo_record(seed, ChannelLock3::new())),
        ] {
            assert_eq!(channel, lock, "{what} against Lock, seed {seed}");
        }
    }
    // The exact records: seed 1 runs the first pass forwards, seed 2 in
    // reverse (the issue's `[3, 2, 1]`); either way the order then holds.
    assert_eq!(lock_fifo_record(1, ChannelLock1::new(1)).1, [1, 2, 3].repeat(FAIRNESS_LOOPS));
    assert_eq!(lock_fifo_record(2, ChannelLock1::new(1)).1, [3, 2, 1].repeat(FAIRNESS_LOOPS));
}

// ---------------------------------------------------------------------------
// 7. wait_all_tasks_blocked with a cushion, and with MockClock's autojump
//    (Trio's _tests/test_testing.py and _core/_tests/test_mock_clock.py)

/// Virtual seconds, with millisecond precision.
fn vsecs() -> f64 {
    (current_time().as_nanos() / 1_000_000) as f64 / 1000.0
}

/// test_wait_all_tasks_blocked: both waiters wake only after the busy bee
/// (ten checkpoints) is done; a waiter in a cancelled nursery gets
/// Cancelled.
#[test]
fn test_wait_all_tasks_blocked() {
    for seed in 1..=4 {
        let log = Log::default();
        let l = log.clone();
        Builder::new()
            .seed(seed)
            .run(open_nursery(move |n| async move {
                let bee = l.clone();
                n.start_soon(async move {
                    for _ in 0..10 {
                        checkpoint().await?;
                    }
                    bee.push("busy bee exhausted");
                    Ok::<_, BoxError>(())
                })?;
                for _ in 0..2 {
                    let w = l.clone();
                    n.start_soon(async move {
                        wait_all_tasks_blocked().await?;
                        w.push("quiet at last!");
                        Ok::<_, BoxError>(())
                    })?;
                }
                Ok::<_, BoxError>(())
            }))
            .unwrap();
        assert_eq!(log.get(), strings(&["busy bee exhausted", "quiet at last!", "quiet at last!"]), "seed {seed}");
    }
    // Cancellation.
    let out = Builder::new().seed(1).run(open_nursery(|n| async move {
        let got = Rc::new(RefCell::new(None));
        let g = got.clone();
        let inner = open_nursery(move |inner| async move {
            inner.start_soon(async move {
                *g.borrow_mut() = Some(wait_all_tasks_blocked().await);
                Ok::<_, BoxError>(())
            })?;
            inner.cancel_scope().cancel();
            Ok::<_, BoxError>(())
        })
        .await;
        assert!(matches!(inner, Ok(None) | Ok(Some(()))), "{inner:?}");
        let _ = n;
        let got = got.borrow_mut().take();
        Ok::<_, BoxError>(got)
    }));
    assert_eq!(out.unwrap(), Some(Some(Err(Cancelled))));
}

/// test_wait_all_tasks_blocked_with_timeouts: a sleeping task counts as
/// blocked; after a manual jump past its deadline, the next idle moment
/// comes after it has finished.
#[test]
fn test_wait_all_tasks_blocked_with_timeouts() {
    let clock = MockClock::new();
    let c = clock.clone();
    let log = Log::default();
    let l = log.clone();
    Builder::new()
        .seed(1)
        .clock(clock)
        .run(open_nursery(move |n| async move {
            let t = l.clone();
            n.start_soon(async move {
                t.push("tt start");
                sleep(Duration::from_secs(5)).await?;
                t.push("tt finished");
                Ok::<_, BoxError>(())
            })?;
            wait_all_tasks_blocked().await?;
            assert_eq!(l.get(), strings(&["tt start"]));
            c.jump(Duration::from_secs(10));
            wait_all_tasks_blocked().await?;
            assert_eq!(l.get(), strings(&["tt start", "tt finished"]));
            assert_eq!(secs(), 10);
            Ok::<_, BoxError>(())
        }))
        .unwrap();
}

/// test_wait_all_tasks_blocked_with_cushion: `blink` is blocked three
/// times for 10 ms; the waiter without cushion wakes at its first idle
/// moment, those of 20 ms and 30 ms only after blink has ended (each
/// needs that long blocked in a row), the smaller cushion first and both
/// waiters of 20 ms together. Real time (the cushion is real time), so
/// the run takes about 60 ms.
#[test]
fn test_wait_all_tasks_blocked_with_cushion() {
    for seed in 1..=3 {
        let log = Log::default();
        let l = log.clone();
        let started = std::time::Instant::now();
        Builder::new()
            .seed(seed)
            .run(open_nursery(move |n| async move {
                let b = l.clone();
                n.start_soon(async move {
                    b.push("blink start");
                    for _ in 0..3 {
                        sleep(Duration::from_millis(10)).await?;
                    }
                    b.push("blink end");
                    Ok::<_, BoxError>(())
                })?;
                for (cushion, name) in [
                    (0, "wait_no_cushion end"),
                    (20, "wait_small_cushion end"),
                    (20, "wait_small_cushion end"),
                    (30, "wait_big_cushion end"),
                ] {
                    let w = l.clone();
                    n.start_soon(async move {
                        wait_all_tasks_blocked().cushion(Duration::from_millis(cushion)).await?;
                        w.push(name);
                        Ok::<_, BoxError>(())
                    })?;
                }
                Ok::<_, BoxError>(())
            }))
            .unwrap();
        assert_eq!(
            log.get(),
            strings(&[
                "blink start",
                "wait_no_cushion end",
                "blink end",
                "wait_small_cushion end",
                "wait_small_cushion end",
                "wait_big_cushion end",
            ]),
            "seed {seed}"
        );
        // 30 ms of blinking, then 20 ms and 30 ms of cushion in a row.
        assert!(started.elapsed() >= Duration::from_millis(80), "{:?}", started.elapsed());
    }
}

/// The tiebreak: waiters of one cushion wake together, at one idle moment,
/// in one pass (so the pass's order, forwards or reversed, decides who
/// runs first: across seeds both orders appear); a waiter with a larger
/// cushion that arrived first still wakes after them.
#[test]
fn test_wait_all_tasks_blocked_tiebreak_same_cushion_wakes_together() {
    let mut orders = std::collections::BTreeSet::new();
    for seed in 1..=8 {
        let log = Log::default();
        let l = log.clone();
        Builder::new()
            .seed(seed)
            .run(open_nursery(move |n| async move {
                let d = l.clone();
                n.start_soon(async move {
                    wait_all_tasks_blocked().cushion(Duration::from_millis(5)).await?;
                    d.push("D");
                    Ok::<_, BoxError>(())
                })?;
                // D is waiting before A, B and C arrive.
                wait_all_tasks_blocked().await?;
                for name in ["A", "B", "C"] {
                    let w = l.clone();
                    n.start_soon(async move {
                        wait_all_tasks_blocked().await?;
                        w.push(name);
                        Ok::<_, BoxError>(())
                    })?;
                }
                Ok::<_, BoxError>(())
            }))
            .unwrap();
        let got = log.get();
        assert_eq!(got.len(), 4, "seed {seed}: {got:?}");
        assert_eq!(got[3], "D", "seed {seed}: {got:?}");
        orders.insert(got[..3].join(""));
    }
    // One idle moment woke all three, and the pass ran them in order or
    // reversed: one idle moment each would always give "ABC".
    assert_eq!(orders.into_iter().collect::<Vec<_>>(), ["ABC", "CBA"]);
}

/// test_mock_clock_autojump_0_and_wait_all_tasks_blocked_0: with autojump
/// threshold 0, the waiter wakes first, without time moving; then the
/// clock jumps to each deadline in turn.
#[test]
fn test_mock_clock_autojump_0_and_wait_all_tasks_blocked_0() {
    for seed in 1..=4 {
        let log = Log::default();
        let l = log.clone();
        Builder::new()
            .seed(seed)
            .clock(autojump_clock())
            .run(open_nursery(move |n| async move {
                let s = l.clone();
                n.start_soon(async move {
                    sleep(Duration::from_secs(100)).await?;
                    s.push(format!("yawn at {}", vsecs()));
                    Ok::<_, BoxError>(())
                })?;
                let w = l.clone();
                n.start_soon(async move {
                    wait_all_tasks_blocked().await?;
                    w.push(format!("waiter woke at {}", vsecs()));
                    sleep(Duration::from_secs(1000)).await?;
                    w.push(format!("waiter done at {}", vsecs()));
                    Ok::<_, BoxError>(())
                })?;
                Ok::<_, BoxError>(())
            }))
            .unwrap();
        assert_eq!(log.get(), strings(&["waiter woke at 0", "yawn at 100", "waiter done at 1000"]), "seed {seed}");
    }
}

/// test_mock_clock_autojump_0_and_wait_all_tasks_blocked_nonzero: with
/// autojump threshold 0 and a waiter of nonzero cushion, the waiter still
/// wakes (after its cushion of real time, virtual time still 0) before
/// the clock jumps to the sleeper's deadline. Trio's cushion is 1 s; 50 ms
/// here, the same rule.
#[test]
fn test_mock_clock_autojump_0_and_wait_all_tasks_blocked_nonzero() {
    for seed in 1..=2 {
        let log = Log::default();
        let l = log.clone();
        let started = std::time::Instant::now();
        Builder::new()
            .seed(seed)
            .clock(autojump_clock())
            .run(open_nursery(move |n| async move {
                let s = l.clone();
                n.start_soon(async move {
                    sleep(Duration::from_secs(100)).await?;
                    s.push(format!("yawn at {}", vsecs()));
                    Ok::<_, BoxError>(())
                })?;
                let w = l.clone();
                n.start_soon(async move {
                    wait_all_tasks_blocked().cushion(Duration::from_millis(50)).await?;
                    w.push(format!("waiter done at {}", vsecs()));
                    Ok::<_, BoxError>(())
                })?;
                Ok::<_, BoxError>(())
            }))
            .unwrap();
        assert_eq!(log.get(), strings(&["waiter done at 0", "yawn at 100"]), "seed {seed}");
        assert!(started.elapsed() >= Duration::from_millis(50), "{:?}", started.elapsed());
    }
}

/// test_mock_clock_autojump, its wait_all_tasks_blocked part: with a
/// threshold of 20 ms, waiters with no cushion and with a 10 ms cushion
/// wake before the clock could jump (time stays put); a threshold changed
/// while the run is idle takes effect at once (10000 s, then 0: the long
/// sleep after it jumps at once).
#[test]
fn test_mock_clock_autojump() {
    let clock = MockClock::new();
    let c = clock.clone();
    let started = std::time::Instant::now();
    Builder::new()
        .seed(1)
        .clock(clock)
        .run(async move {
            c.set_autojump_threshold(Some(Duration::ZERO));
            for i in 0..10u64 {
                let t = current_time();
                sleep(Duration::from_secs(10 * i)).await?;
                assert_eq!(current_time(), t + Duration::from_secs(10 * i));
            }
            assert_eq!(secs(), 450);
            c.set_autojump_threshold(Some(Duration::from_millis(20)));
            wait_all_tasks_blocked().await?;
            assert_eq!(secs(), 450);
            wait_all_tasks_blocked().cushion(Duration::from_millis(10)).await?;
            assert_eq!(secs(), 450);
            c.set_autojump_threshold(Some(Duration::from_secs(10_000)));
            wait_all_tasks_blocked().await?;
            c.set_autojump_threshold(Some(Duration::ZERO));
            sleep(Duration::from_secs(100_000)).await?;
            assert_eq!(secs(), 100_450);
            Ok::<_, BoxError>(())
        })
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

// ---------------------------------------------------------------------------
// 8. current_statistics (Trio's _core/_tests/test_run.py::
//    test_current_statistics)

/// test_current_statistics: the main task alone, then with a child
/// blocked forever and two jobs queued with `run_sync_soon`; cancelling
/// the nursery makes the child runnable; a scope's deadline shows as the
/// time to the next deadline. trioxide has no system tasks, so Trio's
/// "2 system tasks + us" is 1 here; and a scope arms its deadline when its
/// body first blocks, so the test lets it block once before looking.
#[test]
fn test_current_statistics() {
    Builder::new()
        .seed(1)
        .clock(MockClock::new())
        .run(async {
            wait_all_tasks_blocked().await?;
            let stats = current_statistics();
            assert_eq!(stats.tasks_living, 1);
            assert_eq!(stats.run_sync_soon_queue_size, 0);
            assert_eq!(stats.timers, 0);
            assert_eq!((stats.next_deadline, stats.time_to_next_deadline), (None, None));
            assert_eq!(stats.io_statistics.backend, "epoll");

            open_nursery(|n| async move {
                n.start_soon(async {
                    let _ = sleep_forever().await;
                    Ok::<_, BoxError>(())
                })?;
                wait_all_tasks_blocked().await?;
                let token = trioxide::from_thread::current_handle();
                token.run_sync_soon(|| ())?;
                token.run_sync_soon(|| ())?;
                let stats = current_statistics();
                assert_eq!(stats.tasks_living, 2);
                assert_eq!(stats.tasks_runnable, 0);
                assert_eq!(stats.run_sync_soon_queue_size, 2);

                n.cancel_scope().cancel();
                assert_eq!(current_statistics().tasks_runnable, 1);
                Ok::<_, BoxError>(())
            })
            .await?;
            // The jobs ran between passes; the child is gone.
            checkpoint().await?;
            let stats = current_statistics();
            assert_eq!((stats.tasks_living, stats.run_sync_soon_queue_size), (1, 0));

            let scope = CancelScope::with_deadline(current_time() + Duration::from_secs(5));
            scope
                .run(async {
                    checkpoint().await?;
                    let stats = current_statistics();
                    assert_eq!(stats.timers, 1);
                    assert_eq!(stats.time_to_next_deadline, Some(Duration::from_secs(5)));
                    assert_eq!(stats.next_deadline, Some(trioxide::Instant::ZERO + Duration::from_secs(5)));
                    Ok::<_, Cancelled>(())
                })
                .await?;
            let stats = current_statistics();
            assert_eq!((stats.timers, stats.time_to_next_deadline), (0, None));
            Ok::<_, BoxError>(())
        })
        .unwrap();
}

/// The I/O part: a task blocked receiving on a socket counts as waiting to
/// read, and stops counting once data arrives.
#[test]
fn test_current_statistics_io_waits() {
    Builder::new()
        .seed(1)
        .run(open_nursery(|n| async move {
            let (a, b) = trioxide::UnixStream::pair()?;
            n.start_soon(async move {
                let mut buf = [0u8; 8];
                let got = b.receive_some(&mut buf).await?;
                assert_eq!(&buf[..got], b"hi");
                Ok::<_, BoxError>(())
            })?;
            wait_all_tasks_blocked().await?;
            let io = current_statistics().io_statistics;
            assert_eq!((io.tasks_waiting_read, io.tasks_waiting_write), (1, 0));
            a.send_all(b"hi").await?;
            wait_all_tasks_blocked().await?;
            let io = current_statistics().io_statistics;
            assert_eq!((io.tasks_waiting_read, io.tasks_waiting_write), (0, 0));
            assert_eq!(current_statistics().tasks_living, 1);
            Ok::<_, BoxError>(())
        }))
        .unwrap();
}
