//! Rules C1–C17 of RULES.md (at the repository root), section "Cancel scopes
//! and time", one or more tests per rule, named after the rule.
//!
//! Every timing test runs on a `MockClock` (virtual time, autojump or manual
//! jumps) and asserts exact instants; nothing sleeps in real time. Where the
//! order of tasks inside a pass matters, the seed is fixed, or the test is
//! built so that either order must give the same answer.

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use trioxide::{
    cancel_shielded_checkpoint, checkpoint, checkpoint_if_cancelled, current_time, fail_after, fail_at, move_on_after,
    move_on_at, open_nursery, secs_f64, sleep, sleep_forever, sleep_until, wait_all_tasks_blocked, BoxError, Builder,
    CancelScope, Cancelled, Instant, MockClock, MultiError, Sleep, TooSlow,
};

// ---------------------------------------------------------------- helpers

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

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The instant `n` seconds after the clock's origin.
fn at(n: u64) -> Instant {
    Instant::ZERO + secs(n)
}

/// A mock clock that jumps to the next deadline as soon as every task is
/// blocked.
fn autojump_clock() -> MockClock {
    let clock = MockClock::new();
    clock.set_autojump_threshold(Some(Duration::ZERO));
    clock
}

/// Runs `main` with a fixed seed on an autojumping mock clock.
fn run_mock<F: Future>(main: F) -> F::Output {
    Builder::new().seed(1).clock(autojump_clock()).run(main)
}

/// `sleep_forever`, with its (only possible) error as a `Result<(), _>`.
async fn forever() -> Result<(), Cancelled> {
    match sleep_forever().await {
        Ok(never) => match never {},
        Err(c) => Err(c),
    }
}

/// Runs `f`; returns the panic's message if it panicked, `None` otherwise.
fn panic_message(f: impl FnOnce()) -> Option<String> {
    let payload = catch_unwind(AssertUnwindSafe(f)).err()?;
    Some(if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else {
        "<non-string panic payload>".to_string()
    })
}

/// Polls `fut` exactly once (it must stay pending), from inside the current
/// task and cancel status.
async fn poll_once<F: Future + ?Sized>(mut fut: Pin<&mut F>) {
    poll_fn(|cx| {
        assert!(fut.as_mut().poll(cx).is_pending(), "expected the future to stay pending");
        Poll::Ready(())
    })
    .await
}

/// A cancel scope's future, boxed, to keep it past the scope it entered in.
type ScopeFuture = Pin<Box<dyn Future<Output = Result<Option<()>, Cancelled>>>>;

// ---------------------------------------------------------------- C1

#[test]
fn c1_every_checkpoint_after_cancel_reports_cancelled() {
    run_mock(async {
        let scope = CancelScope::new();
        let out = scope
            .run(async {
                let before = checkpoint().await;
                scope.cancel();
                // Level-triggered: not just the first checkpoint, every one.
                let after = vec![
                    checkpoint_if_cancelled(),
                    checkpoint().await,
                    checkpoint().await,
                    checkpoint_if_cancelled(),
                    sleep(Duration::ZERO).await,
                    sleep(secs(10)).await,
                    sleep_until(at(5)).await,
                    forever().await,
                    wait_all_tasks_blocked().await,
                    checkpoint().await,
                ];
                Ok::<_, Cancelled>((before, after, current_time()))
            })
            .await;
        let (before, after, t) = out.expect("the body swallowed every Cancelled").expect("the body finished");
        assert_eq!(before, Ok(()));
        assert_eq!(after, vec![Err(Cancelled); 10]);
        // The cancelled sleeps returned at once.
        assert_eq!(t, Instant::ZERO);
        assert!(scope.cancel_called());
        // The body returned Ok, so the scope caught nothing.
        assert!(!scope.cancelled_caught());
    });
}

#[test]
fn c1_cancelled_body_propagating_with_question_mark_is_caught_by_its_scope() {
    run_mock(async {
        let scope = CancelScope::new();
        let reached = Cell::new(0);
        let out = scope
            .run(async {
                reached.set(1);
                checkpoint().await?;
                reached.set(2);
                scope.cancel();
                reached.set(3);
                sleep(secs(1)).await?;
                reached.set(4);
                Ok::<_, Cancelled>("finished")
            })
            .await;
        assert_eq!(out, Ok(None));
        assert_eq!(reached.get(), 3);
        assert!(scope.cancel_called());
        assert!(scope.cancelled_caught());
        assert_eq!(current_time(), Instant::ZERO);
    });
}

#[test]
fn c1_cancelling_twice_is_harmless() {
    run_mock(async {
        let scope = CancelScope::new();
        scope.cancel();
        scope.cancel();
        assert!(scope.cancel_called());
        let out = scope
            .run(async {
                scope.cancel();
                let first = checkpoint().await;
                scope.cancel();
                scope.cancel();
                let second = checkpoint().await;
                assert_eq!((first, second), (Err(Cancelled), Err(Cancelled)));
                second?;
                Ok::<_, Cancelled>(())
            })
            .await;
        assert_eq!(out, Ok(None));
        assert!(scope.cancelled_caught());
        scope.cancel();
        assert!(scope.cancel_called());
        assert!(scope.cancelled_caught());
        // Nothing leaked out of the scope.
        assert_eq!(checkpoint().await, Ok(()));
        assert_eq!(sleep(secs(1)).await, Ok(()));
        assert_eq!(current_time(), at(1));
    });
}

// ---------------------------------------------------------------- C2

#[test]
fn c2_cancel_shielded_checkpoint_never_reports_cancelled_but_still_yields() {
    let sibling_steps = Rc::new(Cell::new(0u32));
    let steps = sibling_steps.clone();
    let out = run_mock(open_nursery(|n| async move {
        let s = steps.clone();
        n.start_soon(async move {
            for _ in 0..3 {
                checkpoint().await?;
                s.set(s.get() + 1);
            }
            Ok::<_, BoxError>(())
        })?;
        let scope = CancelScope::new();
        scope.cancel();
        let out = scope
            .run(async {
                let mut survived = 0;
                for _ in 0..5 {
                    // Returns `()`: there is no way for it to report Cancelled.
                    cancel_shielded_checkpoint().await;
                    survived += 1;
                }
                // It was a schedule point each time: the sibling advanced
                // once per pass and finished its three checkpoints.
                let sibling = steps.get();
                // The cancellation is still pending, not consumed.
                let after = checkpoint_if_cancelled();
                Ok::<_, Cancelled>((survived, sibling, after))
            })
            .await;
        assert_eq!(out, Ok(Some((5, 3, Err(Cancelled)))));
        Ok::<_, BoxError>(())
    }));
    assert_eq!(out.unwrap(), Some(()));
    assert_eq!(sibling_steps.get(), 3);
}

#[test]
fn c2_checkpoint_inside_a_shielded_scope_never_reports_cancelled() {
    run_mock(async {
        let outer = CancelScope::new();
        outer.cancel();
        let out = outer
            .run(async {
                let shielded = CancelScope::shielded().run(checkpoint()).await;
                let shielded_sleep = CancelScope::shielded().run(sleep(secs(2))).await;
                let t = current_time();
                let unshielded = checkpoint().await;
                Ok::<_, Cancelled>((shielded, shielded_sleep, t, unshielded))
            })
            .await;
        assert_eq!(out, Ok(Some((Ok(Some(())), Ok(Some(())), at(2), Err(Cancelled)))));
    });
}

// ---------------------------------------------------------------- C3

#[test]
fn c3_shield_blocks_cancellation_from_outside() {
    run_mock(async {
        let outer = CancelScope::new();
        let inner = CancelScope::shielded();
        let out = outer
            .run(async {
                outer.cancel();
                let r = inner
                    .run(async {
                        checkpoint().await?;
                        sleep(secs(1)).await?;
                        checkpoint_if_cancelled()?;
                        Ok::<_, Cancelled>(current_time())
                    })
                    .await;
                let after = checkpoint().await;
                Ok::<_, Cancelled>((r, after))
            })
            .await;
        assert_eq!(out, Ok(Some((Ok(Some(at(1))), Err(Cancelled)))));
        assert!(!inner.cancel_called());
        assert!(!inner.cancelled_caught());
        assert!(!outer.cancelled_caught());
    });
}

#[test]
fn c3_shield_does_not_block_the_scopes_own_cancellation() {
    run_mock(async {
        let scope = CancelScope::shielded();
        let out = scope
            .run(async {
                checkpoint().await?;
                scope.cancel();
                checkpoint().await?;
                Ok::<_, Cancelled>("not reached")
            })
            .await;
        assert_eq!(out, Ok(None));
        assert!(scope.cancelled_caught());

        // Nor its own deadline.
        let timed = CancelScope::shielded();
        timed.set_deadline(at(3));
        let out = timed
            .run(async {
                sleep(secs(10)).await?;
                Ok::<_, Cancelled>(())
            })
            .await;
        assert_eq!(out, Ok(None));
        assert!(timed.cancelled_caught());
        assert_eq!(current_time(), at(3));
    });
}

#[test]
fn c3_shield_does_not_block_cancellation_of_inner_scopes() {
    run_mock(async {
        let outer = CancelScope::new();
        let shield = CancelScope::shielded();
        let inner = CancelScope::new();
        outer.cancel();
        let out = outer
            .run(async {
                let s = shield
                    .run(async {
                        let i = inner
                            .run(async {
                                inner.cancel();
                                checkpoint().await?;
                                Ok::<_, Cancelled>("not reached")
                            })
                            .await;
                        // Back in the shielded scope: not cancelled.
                        let here = checkpoint().await;
                        Ok::<_, Cancelled>((i, here))
                    })
                    .await;
                checkpoint().await?;
                Ok::<_, Cancelled>(s)
            })
            .await;
        assert_eq!(out, Ok(None));
        assert!(inner.cancelled_caught());
        assert!(!shield.cancelled_caught());
        assert!(outer.cancelled_caught());
    });
    // The same, with the results of the inner levels checked.
    run_mock(async {
        let outer = CancelScope::new();
        outer.cancel();
        let shield = CancelScope::shielded();
        let inner = CancelScope::new();
        let s = outer
            .run(async {
                let s = shield
                    .run(async {
                        let i = inner
                            .run(async {
                                inner.cancel();
                                checkpoint().await?;
                                Ok::<_, Cancelled>("not reached")
                            })
                            .await;
                        Ok::<_, Cancelled>((i, checkpoint().await))
                    })
                    .await;
                Ok::<_, Cancelled>(s)
            })
            .await;
        assert_eq!(s, Ok(Some(Ok(Some((Ok(None), Ok(())))))));
    });
}

#[test]
fn c3_turning_the_shield_on_or_off_takes_effect_at_once() {
    run_mock(async {
        let outer = CancelScope::new();
        let inner = CancelScope::new();
        let out = outer
            .run(async {
                let r = inner
                    .run(async {
                        let mut seen = Vec::new();
                        seen.push(checkpoint_if_cancelled());
                        outer.cancel();
                        seen.push(checkpoint_if_cancelled());
                        inner.set_shield(true);
                        assert!(inner.shield());
                        seen.push(checkpoint_if_cancelled());
                        seen.push(checkpoint().await);
                        inner.set_shield(false);
                        assert!(!inner.shield());
                        seen.push(checkpoint_if_cancelled());
                        inner.set_shield(true);
                        seen.push(checkpoint_if_cancelled());
                        inner.set_shield(false);
                        assert_eq!(seen, [Ok(()), Err(Cancelled), Ok(()), Ok(()), Err(Cancelled), Ok(())]);
                        checkpoint().await?;
                        Ok::<_, Cancelled>(())
                    })
                    .await;
                // The Cancelled is the outer scope's: it passes through.
                assert_eq!(r, Err(Cancelled));
                r
            })
            .await;
        assert_eq!(out, Ok(None));
        assert!(!inner.cancelled_caught());
        assert!(outer.cancelled_caught());
    });
}

// ---------------------------------------------------------------- C4

#[test]
fn c4_unshielding_wakes_a_blocked_task_at_once_with_cancelled() {
    let log = new_log();
    let l = log.clone();
    let out = run_mock(open_nursery(|n| async move {
        let outer = CancelScope::new();
        let shield = CancelScope::shielded();
        let (o, s, cl) = (outer.clone(), shield.clone(), l.clone());
        n.start_soon(async move {
            let r = o
                .run(async {
                    let r = s
                        .run(async {
                            let r = sleep(secs(1000)).await;
                            push(&cl, format!("sleep {r:?} at {:?}", current_time()));
                            r?;
                            Ok::<_, Cancelled>(())
                        })
                        .await;
                    push(&cl, format!("shield scope {r:?}"));
                    r.map(|_| ())
                })
                .await;
            push(&cl, format!("outer scope {r:?}"));
            Ok::<_, BoxError>(())
        })?;
        sleep(secs(1)).await?; // the child is asleep inside the shield
        outer.cancel();
        sleep(secs(1)).await?; // the shield holds: still asleep
        assert!(entries(&l).is_empty(), "{:?}", entries(&l));
        shield.set_shield(false);
        // Woken at once: it runs in the next pass (two of our checkpoints
        // span at least one whole pass), long before its timer at 1000 s.
        checkpoint().await?;
        checkpoint().await?;
        assert_eq!(
            entries(&l),
            ["sleep Err(Cancelled) at Instant(2s)", "shield scope Err(Cancelled)", "outer scope Ok(None)"]
        );
        assert_eq!(current_time(), at(2));
        assert!(outer.cancelled_caught());
        assert!(!shield.cancelled_caught());
        Ok::<_, BoxError>(())
    }));
    assert_eq!(out.unwrap(), Some(()));
    assert_eq!(log.borrow().len(), 3);
}

// ---------------------------------------------------------------- C5

#[test]
fn c5_outer_scope_catches_when_outer_and_inner_are_both_cancelled() {
    for outer_first in [true, false] {
        run_mock(async {
            let outer = CancelScope::new();
            let inner = CancelScope::new();
            let out = outer
                .run(async {
                    let r = inner
                        .run(async {
                            if outer_first {
                                outer.cancel();
                                inner.cancel();
                            } else {
                                inner.cancel();
                                outer.cancel();
                            }
                            checkpoint().await?;
                            Ok::<_, Cancelled>(())
                        })
                        .await;
                    assert_eq!(r, Err(Cancelled), "the inner scope must let it through");
                    r
                })
                .await;
            assert_eq!(out, Ok(None));
            assert!(outer.cancel_called() && inner.cancel_called());
            assert!(outer.cancelled_caught(), "outer_first={outer_first}");
            assert!(!inner.cancelled_caught(), "outer_first={outer_first}");
        });
    }
}

#[test]
fn c5_outer_scope_catches_when_both_deadlines_expire_together() {
    run_mock(async {
        let outer = CancelScope::with_deadline(at(1));
        let inner = CancelScope::with_deadline(at(1));
        let out = outer
            .run(async {
                let r = inner.run(forever()).await;
                assert_eq!(r, Err(Cancelled));
                r
            })
            .await;
        assert_eq!(out, Ok(None));
        assert_eq!(current_time(), at(1));
        assert!(outer.cancel_called() && inner.cancel_called());
        assert!(outer.cancelled_caught());
        assert!(!inner.cancelled_caught());
    });
}

#[test]
fn c5_a_shielded_inner_scope_catches_its_own_cancel_when_both_are_cancelled() {
    run_mock(async {
        let outer = CancelScope::new();
        let inner = CancelScope::shielded();
        let out = outer
            .run(async {
                outer.cancel();
                let r = inner
                    .run(async {
                        inner.cancel();
                        checkpoint().await?;
                        Ok::<_, Cancelled>(())
                    })
                    .await;
                Ok::<_, Cancelled>(r)
            })
            .await;
        assert_eq!(out, Ok(Some(Ok(None))));
        assert!(inner.cancelled_caught());
        assert!(!outer.cancelled_caught());
    });
}

// ---------------------------------------------------------------- C6

#[test]
fn c6_cancel_pending_when_scope_exits_without_checkpoint_is_never_delivered() {
    run_mock(async {
        let scope = CancelScope::new();
        let out = scope
            .run(async {
                scope.cancel();
                Ok::<_, Cancelled>(42)
            })
            .await;
        assert_eq!(out, Ok(Some(42)));
        assert!(scope.cancel_called());
        assert!(!scope.cancelled_caught());
        // Outside, nothing of it remains.
        assert_eq!(checkpoint_if_cancelled(), Ok(()));
        assert_eq!(checkpoint().await, Ok(()));
        assert_eq!(sleep(secs(1)).await, Ok(()));
        assert_eq!(current_time(), at(1));
    });
}

#[test]
fn c6_nested_cancel_pending_at_inner_exit_does_not_reach_the_outer_scope() {
    run_mock(async {
        let outer = CancelScope::new();
        let inner = CancelScope::new();
        let out = outer
            .run(async {
                let i = inner
                    .run(async {
                        inner.cancel();
                        Ok::<_, Cancelled>(1)
                    })
                    .await;
                checkpoint().await?;
                sleep(secs(2)).await?;
                Ok::<_, Cancelled>((i, current_time()))
            })
            .await;
        assert_eq!(out, Ok(Some((Ok(Some(1)), at(2)))));
        assert!(!inner.cancelled_caught());
        assert!(!outer.cancel_called());
        assert!(!outer.cancelled_caught());
    });
}

#[test]
fn c6_deadline_passed_inside_without_checkpoint_is_never_delivered() {
    // A manual clock: the deadline passes while the body runs, but the body
    // never reaches a checkpoint.
    let clock = MockClock::new();
    let c = clock.clone();
    let (out, report) = Builder::new().seed(1).clock(clock.clone()).run_with_report(async move {
        let scope = CancelScope::with_deadline(at(1));
        let out = scope
            .run(async {
                c.jump(secs(5));
                Ok::<_, Cancelled>(7)
            })
            .await;
        assert_eq!(out, Ok(Some(7)));
        assert!(!scope.cancelled_caught());
        assert_eq!(checkpoint().await, Ok(()));
        assert_eq!(sleep(Duration::ZERO).await, Ok(()));
        current_time()
    });
    assert_eq!(out, at(5));
    assert_eq!(report.timers_left, 0);
    assert_eq!(report.tasks_left, 0);
}

// ---------------------------------------------------------------- C7

#[test]
fn c7_cancel_after_exit_sets_cancel_called_but_not_cancelled_caught() {
    run_mock(async {
        let scope = CancelScope::new();
        let out = scope
            .run(async {
                checkpoint().await?;
                Ok::<_, Cancelled>(1)
            })
            .await;
        assert_eq!(out, Ok(Some(1)));
        assert!(!scope.cancel_called());
        scope.cancel();
        assert!(scope.cancel_called());
        assert!(!scope.cancelled_caught());
        // Cancelling an exited scope does not touch the code around it.
        assert_eq!(checkpoint().await, Ok(()));
    });
}

#[test]
fn c7_a_scope_cannot_be_entered_again_after_it_exited() {
    let msg = panic_message(|| {
        run_mock(async {
            let scope = CancelScope::new();
            assert_eq!(scope.run(async { Ok::<_, Cancelled>(1) }).await, Ok(Some(1)));
            let _ = scope.run(async { Ok::<_, Cancelled>(2) }).await;
        })
    });
    let msg = msg.expect("entering an exited scope must panic");
    assert!(msg.contains("entered only once"), "{msg}");
    assert!(msg.contains("already exited"), "{msg}");
}

#[test]
fn c7_a_scope_cannot_be_entered_again_while_it_is_active() {
    let msg = panic_message(|| {
        run_mock(async {
            let scope = CancelScope::new();
            let _ = scope.run(async { scope.run(async { Ok::<_, Cancelled>(()) }).await }).await;
        })
    });
    let msg = msg.expect("re-entering an active scope must panic");
    assert!(msg.contains("entered only once"), "{msg}");
    assert!(msg.contains("already active"), "{msg}");
}

#[test]
fn c7_a_scope_active_in_one_task_cannot_be_entered_by_another() {
    let msg = panic_message(|| {
        // The 100 s timeout only keeps a runtime that accepts the second
        // entry from hanging (the first task sleeps forever).
        let _ = run_mock(move_on_after(
            secs(100),
            open_nursery(|n| async move {
                let scope = CancelScope::new();
                let s = scope.clone();
                n.start_soon(async move { s.run(forever()).await.map(|_| ()) })?;
                wait_all_tasks_blocked().await?;
                let _ = scope.run(async { Ok::<_, Cancelled>(()) }).await;
                Ok::<_, BoxError>(())
            }),
        ));
    });
    let msg = msg.expect("entering a scope another task is inside must panic");
    assert!(msg.contains("entered only once"), "{msg}");
    assert!(msg.contains("already active"), "{msg}");
}

#[test]
fn c7_a_scope_entered_by_one_task_cannot_be_continued_by_another() {
    // Task A enters a scope (polls its future once) and hands the pending
    // future to task B, which awaits it. The scope is now used by two tasks:
    // rule C7 forbids it, and silently accepting it loses wake-ups, because
    // cancelling the scope wakes the task that entered it (A, gone) instead of
    // the one blocked in it (B). Expected: a panic when B polls it. The outer
    // 100 s timeout only keeps a runtime that gets this wrong from hanging.
    let log = new_log();
    let l = log.clone();
    let msg = panic_message(|| {
        let _ = run_mock(move_on_after(
            secs(100),
            open_nursery(|n| async move {
                let slot: Rc<RefCell<Option<ScopeFuture>>> = Rc::new(RefCell::new(None));
                let scope = CancelScope::new();
                let mut fut: ScopeFuture = Box::pin(scope.run(forever()));
                let s1 = slot.clone();
                n.start_soon(async move {
                    poll_once(fut.as_mut()).await; // entered by task A
                    *s1.borrow_mut() = Some(fut);
                    Ok::<_, BoxError>(())
                })?;
                let (s2, l2) = (slot.clone(), l.clone());
                n.start_soon(async move {
                    wait_all_tasks_blocked().await?;
                    let fut = s2.borrow_mut().take().expect("task A handed the scope over");
                    let r = fut.await; // continued by task B
                    push(&l2, format!("B: {r:?} at {:?}", current_time()));
                    Ok::<_, BoxError>(())
                })?;
                sleep(secs(1)).await?;
                scope.cancel();
                Ok::<_, BoxError>(())
            }),
        ));
    });
    let msg = msg.unwrap_or_else(|| {
        panic!("a scope entered by task A was awaited by task B without any error; B's outcome: {:?}", entries(&log))
    });
    assert!(msg.contains("task"), "{msg}");
    assert!(entries(&log).is_empty(), "B must not get past the misuse: {:?}", entries(&log));
}

// ---------------------------------------------------------------- C8

#[test]
fn c8_scope_cancelled_before_entry_reports_cancelled_at_first_checkpoint() {
    run_mock(async {
        let scope = CancelScope::new();
        scope.cancel();
        let log = RefCell::new(Vec::new());
        let out = scope
            .run(async {
                log.borrow_mut().push("body started");
                let r = checkpoint().await;
                log.borrow_mut().push(if r.is_err() { "first checkpoint: Cancelled" } else { "first checkpoint: Ok" });
                r?;
                log.borrow_mut().push("not reached");
                Ok::<_, Cancelled>(())
            })
            .await;
        assert_eq!(out, Ok(None));
        assert_eq!(*log.borrow(), ["body started", "first checkpoint: Cancelled"]);
        assert!(scope.cancelled_caught());
    });
}

#[test]
fn c8_scope_whose_deadline_passed_reports_cancel_called() {
    let clock = MockClock::new();
    let c = clock.clone();
    Builder::new().seed(1).clock(clock).run(async move {
        // Before entry (Trio's test_cancel_unbound).
        let scope = CancelScope::with_deadline(at(1));
        assert!(!scope.cancel_called());
        scope.set_deadline(Instant::ZERO);
        assert!(scope.cancel_called());
        scope.set_deadline(at(1));
        assert!(scope.cancel_called(), "a scope never becomes un-cancelled");

        c.jump(secs(5));
        assert!(CancelScope::with_deadline(at(3)).cancel_called());
        assert!(CancelScope::with_deadline(at(5)).cancel_called());
        assert!(!CancelScope::with_deadline(at(6)).cancel_called());

        // Inside, as soon as the clock has passed it, before any pass ran.
        let scope = CancelScope::with_deadline(at(6));
        let out = scope
            .run(async {
                assert!(!scope.cancel_called());
                assert_eq!(checkpoint_if_cancelled(), Ok(()));
                c.jump(secs(2));
                assert!(scope.cancel_called());
                assert_eq!(checkpoint_if_cancelled(), Err(Cancelled));
                checkpoint().await?;
                Ok::<_, Cancelled>(())
            })
            .await;
        assert_eq!(out, Ok(None));
        assert!(scope.cancelled_caught());
    });
}

#[test]
fn c8_entering_a_scope_whose_deadline_passed_cancels_the_first_checkpoint() {
    run_mock(async {
        sleep(secs(5)).await.unwrap();
        let reached = Cell::new(false);
        let out = move_on_at(at(3), async {
            reached.set(true);
            checkpoint().await?;
            Ok::<_, Cancelled>(())
        })
        .await;
        assert_eq!(out, Ok(None));
        assert!(reached.get());
        let r: Result<(), BoxError> = fail_at(at(4), async {
            checkpoint().await?;
            Ok(())
        })
        .await;
        assert!(r.unwrap_err().is::<TooSlow>());
        assert_eq!(current_time(), at(5));
    });
}

// ---------------------------------------------------------------- C9

#[test]
fn c9_moving_the_deadline_earlier_inside_cancels_the_next_checkpoint() {
    run_mock(async {
        let scope = CancelScope::with_deadline(at(100));
        let woke = Cell::new(None);
        let out = scope
            .run(async {
                sleep(secs(1)).await?;
                scope.set_deadline(at(3));
                assert_eq!(scope.deadline(), at(3));
                let r = sleep(secs(50)).await;
                woke.set(Some(current_time()));
                r?;
                Ok::<_, Cancelled>(())
            })
            .await;
        assert_eq!(out, Ok(None));
        assert_eq!(woke.get(), Some(at(3)));
        assert!(scope.cancelled_caught());

        // Moved to a time already passed: the very next checkpoint.
        let scope = CancelScope::new();
        assert_eq!(scope.deadline(), Instant::FAR_FUTURE);
        let out = scope
            .run(async {
                checkpoint().await?;
                scope.set_deadline(at(2));
                let r = checkpoint_if_cancelled();
                assert_eq!(r, Err(Cancelled));
                r?;
                Ok::<_, Cancelled>(())
            })
            .await;
        assert_eq!(out, Ok(None));
        assert_eq!(current_time(), at(3));

        // set_relative_deadline inside is relative to now.
        let scope = CancelScope::with_deadline(at(100));
        let out = scope
            .run(async {
                scope.set_relative_deadline(secs(4));
                assert_eq!(scope.deadline(), at(7));
                forever().await?;
                Ok::<_, Cancelled>(())
            })
            .await;
        assert_eq!(out, Ok(None));
        assert_eq!(current_time(), at(7));
    });
}

#[test]
fn c9_moving_the_deadline_later_inside_postpones_cancellation() {
    run_mock(async {
        let scope = CancelScope::with_deadline(at(2));
        let steps = RefCell::new(Vec::new());
        let out = scope
            .run(async {
                scope.set_deadline(at(10));
                let r = sleep(secs(5)).await;
                steps.borrow_mut().push((r, current_time()));
                let r = forever().await;
                steps.borrow_mut().push((r, current_time()));
                Ok::<_, Cancelled>(())
            })
            .await;
        assert_eq!(out, Ok(Some(())));
        assert_eq!(*steps.borrow(), [(Ok(()), at(5)), (Err(Cancelled), at(10))]);
    });
}

#[test]
fn c9_deadline_passing_after_the_scope_exited_does_nothing() {
    let clock = MockClock::new();
    let c = clock.clone();
    let (scope, report) = Builder::new().seed(1).clock(clock).run_with_report(async move {
        let scope = CancelScope::new();
        assert_eq!(scope.deadline(), Instant::FAR_FUTURE);
        let out = scope
            .run(async {
                scope.set_deadline(current_time() + secs(1));
                assert_eq!(scope.deadline(), at(1));
                checkpoint().await?;
                Ok::<_, Cancelled>(())
            })
            .await;
        assert_eq!(out, Ok(Some(())));
        assert!(!scope.cancel_called());
        c.jump(secs(2));
        for _ in 0..3 {
            assert_eq!(checkpoint().await, Ok(()));
        }
        assert!(!scope.cancel_called());
        assert!(!scope.cancelled_caught());
        scope
    });
    assert!(!scope.cancel_called());
    assert_eq!(report.timers_left, 0);
}

// ---------------------------------------------------------------- C10

#[test]
fn c10_move_on_at_now_runs_the_body_until_its_first_checkpoint() {
    run_mock(async {
        sleep(secs(7)).await.unwrap();
        let log = RefCell::new(Vec::new());
        let out = move_on_at(current_time(), async {
            log.borrow_mut().push("before".to_string());
            let r = sleep(Duration::ZERO).await;
            log.borrow_mut().push(format!("sleep(0) -> {r:?}"));
            r?;
            log.borrow_mut().push("after".to_string());
            Ok::<_, Cancelled>(())
        })
        .await;
        assert_eq!(out, Ok(None));
        assert_eq!(*log.borrow(), ["before", "sleep(0) -> Err(Cancelled)"]);
        assert_eq!(current_time(), at(7));

        // move_on_after(0) is the same, and so is sleep_until(now).
        let out = move_on_after(Duration::ZERO, async {
            sleep_until(current_time()).await?;
            Ok::<_, Cancelled>(())
        })
        .await;
        assert_eq!(out, Ok(None));
    });
}

#[test]
fn c10_sleep_zero_is_a_schedule_point() {
    let log = new_log();
    let l = log.clone();
    run_mock(open_nursery(|n| async move {
        for name in ["A", "B"] {
            let l = l.clone();
            n.start_soon(async move {
                for _ in 0..3 {
                    sleep(Duration::ZERO).await?;
                    push(&l, name);
                }
                Ok::<_, Cancelled>(())
            })?;
        }
        Ok::<_, BoxError>(())
    }))
    .unwrap();
    let log = entries(&log);
    assert_eq!(log.len(), 6);
    // One step of each task per pass: every pass logs A and B once, in
    // either order. Without the yield one task would log three times in a row.
    for pass in log.chunks(2) {
        let mut pass = pass.to_vec();
        pass.sort();
        assert_eq!(pass, ["A", "B"], "{log:?}");
    }
}

#[test]
fn c10_sleeps_take_exactly_their_virtual_time() {
    run_mock(async {
        sleep(secs(3)).await?;
        assert_eq!(current_time(), at(3));
        sleep_until(at(5)).await?;
        assert_eq!(current_time(), at(5));
        sleep(Duration::ZERO).await?;
        sleep_until(at(1)).await?; // in the past: a checkpoint only
        assert_eq!(current_time(), at(5));
        Ok::<_, Cancelled>(())
    })
    .unwrap();
}

// ---------------------------------------------------------------- C11

#[test]
fn c11_relative_deadline_is_fixed_when_the_scope_is_entered() {
    run_mock(async {
        let scope = CancelScope::with_relative_deadline(secs(5));
        sleep(secs(3)).await.unwrap();
        let out = scope
            .run(async {
                assert_eq!(scope.deadline(), at(8));
                sleep(secs(100)).await?;
                Ok::<_, Cancelled>(())
            })
            .await;
        assert_eq!(out, Ok(None));
        assert_eq!(current_time(), at(8));
        assert!(scope.cancelled_caught());

        // set_relative_deadline before entry: also counted from entry.
        let scope = CancelScope::new();
        scope.set_relative_deadline(secs(2));
        sleep(secs(4)).await.unwrap(); // now 12
        let out = scope
            .run(async {
                assert_eq!(scope.deadline(), at(14));
                forever().await?;
                Ok::<_, Cancelled>(())
            })
            .await;
        assert_eq!(out, Ok(None));
        assert_eq!(current_time(), at(14));
    });
}

#[test]
fn c11_move_on_after_and_fail_after_count_from_their_first_poll() {
    run_mock(async {
        let built_early = move_on_after(secs(5), async {
            forever().await?;
            Ok::<_, Cancelled>(())
        });
        sleep(secs(3)).await.unwrap();
        assert_eq!(built_early.await, Ok(None));
        assert_eq!(current_time(), at(8));

        let built_early = fail_after(secs(1), async {
            sleep(secs(10)).await?;
            Ok::<_, BoxError>(())
        });
        sleep(secs(10)).await.unwrap(); // now 18: longer than the timeout
        let r = built_early.await;
        assert!(r.unwrap_err().is::<TooSlow>());
        assert_eq!(current_time(), at(19));
    });
}

// ---------------------------------------------------------------- C12

#[test]
fn c12_fail_at_and_fail_after_report_too_slow_when_the_deadline_cancels_the_body() {
    run_mock(async {
        let r: Result<(), BoxError> = fail_at(at(1), async {
            sleep_until(at(4)).await?;
            Ok(())
        })
        .await;
        assert!(r.unwrap_err().is::<TooSlow>());
        assert_eq!(current_time(), at(1));

        let r: Result<&str, BoxError> = fail_at(at(2), async {
            sleep(Duration::ZERO).await?;
            Ok("in time")
        })
        .await;
        assert_eq!(r.unwrap(), "in time");

        let r: Result<(), BoxError> = fail_after(secs(2), async {
            sleep(secs(4)).await?;
            Ok(())
        })
        .await;
        assert!(r.unwrap_err().is::<TooSlow>());
        assert_eq!(current_time(), at(3));

        // io::Error works too, with kind TimedOut.
        let r: Result<(), io::Error> = fail_after(secs(1), async {
            forever().await?;
            Ok(())
        })
        .await;
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::TimedOut);
        assert_eq!(current_time(), at(4));
    });
}

#[test]
fn c12_no_too_slow_when_the_scope_caught_nothing() {
    run_mock(async {
        // The deadline passed but the body never reached a checkpoint.
        let r: Result<i32, BoxError> = fail_at(current_time(), async { Ok(3) }).await;
        assert_eq!(r.unwrap(), 3);

        // The body swallowed the Cancelled itself and returned Ok.
        let r: Result<bool, BoxError> = fail_after(secs(1), async {
            let r = forever().await;
            Ok(r.is_err())
        })
        .await;
        assert!(r.unwrap());
        assert_eq!(current_time(), at(1));
    });
}

#[test]
fn c12_an_outer_scopes_cancellation_through_fail_after_is_not_too_slow() {
    run_mock(async {
        let outer = CancelScope::new();
        outer.cancel();
        let seen = RefCell::new(None);
        let out = outer
            .run(async {
                let r: Result<(), BoxError> = fail_after(secs(1), async {
                    forever().await?;
                    Ok(())
                })
                .await;
                let e = r.unwrap_err();
                *seen.borrow_mut() = Some((e.is::<Cancelled>(), e.is::<TooSlow>()));
                Err::<(), BoxError>(e)
            })
            .await;
        assert!(matches!(out, Ok(None)), "{out:?}");
        assert_eq!(*seen.borrow(), Some((true, false)));
        assert_eq!(current_time(), Instant::ZERO);
        assert!(outer.cancelled_caught());

        // Both deadlines expire together: the outer scope catches (C5), so
        // fail_at did not catch and reports the Cancelled, not TooSlow.
        let outer = CancelScope::with_deadline(at(1));
        let out = outer
            .run(async {
                let r: Result<(), BoxError> = fail_at(at(1), async {
                    forever().await?;
                    Ok(())
                })
                .await;
                let e = r.unwrap_err();
                *seen.borrow_mut() = Some((e.is::<Cancelled>(), e.is::<TooSlow>()));
                Err::<(), BoxError>(e)
            })
            .await;
        assert!(matches!(out, Ok(None)), "{out:?}");
        assert_eq!(*seen.borrow(), Some((true, false)));
        assert_eq!(current_time(), at(1));
    });
}

#[test]
fn c12_fail_after_fails_even_if_shielded() {
    run_mock(async {
        // trioxide's fail_after has no `shield` argument; the equivalent of
        // Trio's `fail_after(0.01, shield=True)` inside a cancelled scope is a
        // shield directly around it, under the cancelled scope.
        let outer = CancelScope::new();
        let out = outer
            .run(async {
                outer.cancel();
                CancelScope::shielded()
                    .run(fail_after(secs(1), async {
                        forever().await?;
                        Ok::<(), BoxError>(())
                    }))
                    .await
            })
            .await;
        let e = out.unwrap_err();
        assert!(e.is::<TooSlow>(), "{e}");
        assert_eq!(current_time(), at(1));
        assert!(!outer.cancelled_caught());

        // And a scope that is itself shielded and times out catches its own
        // Cancelled (what fail_after turns into TooSlow).
        let outer = CancelScope::new();
        let timed = CancelScope::shielded();
        timed.set_relative_deadline(secs(1));
        let out = outer
            .run(async {
                outer.cancel();
                let r = timed.run(forever()).await;
                Ok::<_, Cancelled>(r)
            })
            .await;
        assert_eq!(out, Ok(Some(Ok(None))));
        assert!(timed.cancelled_caught());
        assert_eq!(current_time(), at(2));
    });
}

// ---------------------------------------------------------------- C13

#[test]
fn c13_negative_or_nan_durations_are_rejected_with_a_clear_error() {
    let e = secs_f64(-1.0).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("-1") && msg.contains("duration"), "{msg}");

    let e = secs_f64(-0.25).unwrap_err();
    assert!(e.to_string().contains("-0.25"), "{e}");

    let e = secs_f64(f64::NAN).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("NaN") && msg.contains("duration"), "{msg}");

    let e = secs_f64(f64::NEG_INFINITY).unwrap_err();
    assert!(e.to_string().contains("-inf"), "{e}");

    // Valid values convert exactly.
    assert_eq!(secs_f64(0.0).unwrap(), Duration::ZERO);
    assert_eq!(secs_f64(1.5).unwrap(), Duration::from_millis(1500));
    assert_eq!(secs_f64(f64::INFINITY).unwrap(), Duration::MAX);
}

#[test]
fn c13_nan_deadlines_are_rejected_with_a_clear_error() {
    let e = Instant::from_secs_f64(f64::NAN).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("NaN") && msg.contains("deadline"), "{msg}");

    // A deadline in the past is fine (it has just passed already).
    assert_eq!(Instant::from_secs_f64(-1.0).unwrap(), Instant::ZERO);
    assert_eq!(Instant::from_secs_f64(2.5).unwrap(), Instant::from_nanos(2_500_000_000));
    assert_eq!(Instant::from_secs_f64(f64::INFINITY).unwrap(), Instant::FAR_FUTURE);
}

#[test]
fn c13_converted_times_work_as_timeouts() {
    run_mock(async {
        let out = move_on_after(secs_f64(1.5).unwrap(), async {
            forever().await?;
            Ok::<_, Cancelled>(())
        })
        .await;
        assert_eq!(out, Ok(None));
        assert_eq!(current_time(), Instant::from_secs_f64(1.5).unwrap());
        // An infinite timeout never fires.
        let out = move_on_after(secs_f64(f64::INFINITY).unwrap(), async {
            sleep(secs(1)).await?;
            Ok::<_, Cancelled>("done")
        })
        .await;
        assert_eq!(out, Ok(Some("done")));
        assert_eq!(current_time(), Instant::from_secs_f64(2.5).unwrap());
    });
}

// ---------------------------------------------------------------- C14

#[test]
fn c14_other_errors_pass_through_a_cancelled_scope_untouched() {
    run_mock(async {
        let scope = CancelScope::new();
        scope.cancel();
        let out = scope
            .run(async {
                assert_eq!(checkpoint().await, Err(Cancelled));
                Err::<(), BoxError>("boom".into())
            })
            .await;
        assert_eq!(out.unwrap_err().to_string(), "boom");
        assert!(!scope.cancelled_caught());

        let scope = CancelScope::new();
        scope.cancel();
        let out = scope
            .run(async {
                let _ = checkpoint().await;
                Err::<(), io::Error>(io::Error::new(io::ErrorKind::AddrInUse, "port taken"))
            })
            .await;
        let e = out.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert_eq!(e.to_string(), "port taken");
        assert!(!scope.cancelled_caught());

        // Its own Cancelled wrapped in an io::Error is recognised.
        let scope = CancelScope::new();
        scope.cancel();
        let out = scope
            .run(async {
                checkpoint().await?;
                Ok::<(), io::Error>(())
            })
            .await;
        assert!(matches!(out, Ok(None)), "{out:?}");
        assert!(scope.cancelled_caught());
    });
}

#[test]
fn c14_a_scope_catches_only_its_own_cancelled() {
    run_mock(async {
        let outer = CancelScope::new();
        let inner = CancelScope::new();
        let out = outer
            .run(async {
                outer.cancel();
                let r = inner
                    .run(async {
                        checkpoint().await?;
                        Ok::<_, Cancelled>(())
                    })
                    .await;
                assert_eq!(r, Err(Cancelled));
                r
            })
            .await;
        assert_eq!(out, Ok(None));
        assert!(!inner.cancel_called());
        assert!(!inner.cancelled_caught());
        assert!(outer.cancelled_caught());
    });
}

#[test]
fn c14_a_scope_filters_its_cancelled_out_of_a_multi_error() {
    run_mock(async {
        let scope = CancelScope::new();
        scope.cancel();
        let out: Result<Option<Option<()>>, MultiError> = scope
            .run(open_nursery(|n| async move {
                n.start_soon(async { Err::<(), BoxError>("boom".into()) })?;
                forever().await?;
                Ok::<_, BoxError>(())
            }))
            .await;
        let rest = out.expect_err("boom must pass through");
        let msgs: Vec<String> = rest.errors().iter().map(|e| e.to_string()).collect();
        assert_eq!(msgs, ["boom"]);
        // Its Cancelled was in the group and was caught.
        assert!(scope.cancelled_caught());
    });
}

// ---------------------------------------------------------------- C15

#[test]
fn c15_cancel_wakes_a_blocked_task_at_once() {
    let log = new_log();
    let l = log.clone();
    run_mock(open_nursery(|n| async move {
        let scope = CancelScope::new();
        let forever_scope = CancelScope::new();
        let (s, fs, l1, l2) = (scope.clone(), forever_scope.clone(), l.clone(), l.clone());
        n.start_soon(async move {
            let r = s.run(sleep(secs(1000))).await;
            push(&l1, format!("sleeper {r:?} at {:?}", current_time()));
            Ok::<_, BoxError>(())
        })?;
        n.start_soon(async move {
            let r = fs.run(forever()).await;
            push(&l2, format!("forever {r:?} at {:?}", current_time()));
            Ok::<_, BoxError>(())
        })?;
        wait_all_tasks_blocked().await?;
        sleep(secs(1)).await?;
        scope.cancel();
        forever_scope.cancel();
        // Two of our checkpoints span at least one whole pass, in which the
        // woken tasks run.
        checkpoint().await?;
        checkpoint().await?;
        let mut got = entries(&l);
        got.sort();
        assert_eq!(got, ["forever Ok(None) at Instant(1s)", "sleeper Ok(None) at Instant(1s)"]);
        assert_eq!(current_time(), at(1));
        Ok::<_, BoxError>(())
    }))
    .unwrap();
    assert_eq!(log.borrow().len(), 2);
}

#[test]
fn c15_cancelling_a_nursery_wakes_its_blocked_children_at_once() {
    let woke = Rc::new(RefCell::new(Vec::new()));
    let w = woke.clone();
    let out = run_mock(open_nursery(|n| async move {
        for _ in 0..3 {
            let w = w.clone();
            n.start_soon(async move {
                let r = sleep(secs(1000)).await;
                w.borrow_mut().push((r, current_time()));
                r
            })?;
        }
        sleep(secs(2)).await?;
        n.cancel_scope().cancel();
        Ok::<_, BoxError>(())
    }));
    assert_eq!(out.unwrap(), Some(()));
    assert_eq!(*woke.borrow(), vec![(Err(Cancelled), at(2)); 3]);
}

#[test]
fn c15_a_sleep_whose_timer_already_fired_completes_instead_of_being_cancelled() {
    // Sleeper: `sleep_until(5s)` inside scope S. Canceller: sleeps until
    // exactly 5 s too, then cancels S. Both timers fire in the same collect,
    // so both tasks run in the same pass. When the canceller runs first, the
    // sleeper's sleep can no longer be aborted (its timer fired) and must
    // complete with Ok; when the sleeper runs first it is Ok anyway. Run over
    // several seeds and check that both orders were actually exercised.
    let mut orders = Vec::new();
    for seed in 0..16 {
        let log = new_log();
        let l = log.clone();
        let clock = autojump_clock();
        let (out, report) = Builder::new().seed(seed).clock(clock).run_with_report(open_nursery(|n| async move {
            let scope = CancelScope::new();
            let (s, la, lb) = (scope.clone(), l.clone(), l.clone());
            n.start_soon(async move {
                let r = s
                    .run(async {
                        let r = sleep_until(at(5)).await;
                        push(&la, format!("sleeper: {r:?} at {:?}", current_time()));
                        // Cancellation is delivered at the next checkpoint.
                        checkpoint().await?;
                        push(&la, "sleeper: not reached");
                        Ok::<_, Cancelled>(())
                    })
                    .await;
                push(&la, format!("scope: {r:?}, caught {}", s.cancelled_caught()));
                Ok::<_, BoxError>(())
            })?;
            n.start_soon(async move {
                sleep_until(at(5)).await?;
                scope.cancel();
                push(&lb, "canceller: cancelled S");
                Ok::<_, BoxError>(())
            })?;
            Ok::<_, BoxError>(())
        }));
        assert_eq!(out.unwrap(), Some(()), "seed {seed}");
        assert_eq!(report.timers_left, 0);
        let log = entries(&log);
        let sleeper_at = log.iter().position(|e| e.starts_with("sleeper:")).unwrap();
        let canceller_at = log.iter().position(|e| e.starts_with("canceller:")).unwrap();
        let sleeper_log: Vec<&String> = log.iter().filter(|e| !e.starts_with("canceller")).collect();
        assert_eq!(sleeper_log, ["sleeper: Ok(()) at Instant(5s)", "scope: Ok(None), caught true"], "seed {seed}");
        orders.push(canceller_at < sleeper_at);
    }
    assert!(orders.contains(&true), "no seed ran the canceller first: the interesting case was not exercised");
    assert!(orders.contains(&false), "no seed ran the sleeper first");
}

// ---------------------------------------------------------------- C16

#[test]
fn c16_exiting_a_scope_while_an_inner_scope_is_open_panics_with_misnesting() {
    let msg = panic_message(|| {
        run_mock(async {
            let outer = CancelScope::new();
            let inner = CancelScope::new();
            let mut stash: Option<ScopeFuture> = None;
            let _ = outer
                .run(async {
                    let mut fut = Box::pin(inner.run(forever()));
                    poll_once(fut.as_mut()).await; // `inner` is entered inside `outer`
                    stash = Some(fut);
                    Ok::<_, Cancelled>(()) // ... and `outer` exits first
                })
                .await;
            drop(stash);
        })
    });
    let msg = msg.expect("leaving a scope with an inner scope still open must panic");
    assert!(msg.contains("misnesting"), "{msg}");
}

#[test]
fn c16_polling_a_scope_outside_the_scope_it_was_entered_in_panics_with_misnesting() {
    let msg = panic_message(|| {
        run_mock(async {
            let inner = CancelScope::new();
            let mut fut = Box::pin(inner.run(forever()));
            poll_once(fut.as_mut()).await; // entered at the task's top level
            let other = CancelScope::new();
            let _ = other
                .run(async {
                    // Polled again under `other`: out of order.
                    let _ = poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
                    Ok::<_, Cancelled>(())
                })
                .await;
        })
    });
    let msg = msg.expect("polling a scope under another scope must panic");
    assert!(msg.contains("misnesting"), "{msg}");
}

// ---------------------------------------------------------------- C17

#[test]
fn c17_a_due_timer_fires_at_the_next_pass_even_while_tasks_stay_runnable() {
    // Manual clock, no autojump: time moves only when we jump it, and the
    // body never lets the run go idle after the jump.
    let clock = MockClock::new();
    let c = clock.clone();
    let log = new_log();
    let l = log.clone();
    Builder::new()
        .seed(3)
        .clock(clock)
        .run(open_nursery(|n| async move {
            let lb = l.clone();
            n.start_soon(async move {
                sleep(secs(1)).await?;
                push(&lb, format!("sleeper woke at {:?}", current_time()));
                Ok::<_, BoxError>(())
            })?;
            wait_all_tasks_blocked().await?; // the sleeper's timer is armed
            c.jump(secs(1));
            push(&l, "jumped");
            checkpoint().await?;
            push(&l, "pass 1");
            checkpoint().await?;
            push(&l, "pass 2");
            Ok::<_, BoxError>(())
        }))
        .unwrap();
    let log = entries(&log);
    let woke = log.iter().position(|e| e == "sleeper woke at Instant(1s)").expect("the sleeper woke");
    let pass2 = log.iter().position(|e| e == "pass 2").unwrap();
    assert!(woke < pass2, "{log:?}");
}

/// Runs `f` on its own thread and waits up to 10 s (real time) for it: a
/// guard for tests whose failure mode is a hang. A passing test returns at
/// once; nothing here sleeps.
fn hang_guard<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, &'static str> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(10)).map_err(|e| match e {
        mpsc::RecvTimeoutError::Timeout => "the run hung",
        mpsc::RecvTimeoutError::Disconnected => "the run panicked",
    })
}

#[test]
fn c17_a_timer_made_due_by_a_manual_jump_fires_even_when_every_task_then_blocks() {
    // Manual clock, no autojump: the body jumps the clock past the child's
    // deadline and then blocks (waiting for the nursery), so every task is
    // blocked while a deadline is already due. The next pass must expire it
    // (Trio's MockClock.deadline_to_sleep_time returns 0 for a deadline that
    // has passed), not block in the I/O wait forever.
    let woke = hang_guard(|| {
        let clock = MockClock::new();
        let c = clock.clone();
        Builder::new().seed(1).clock(clock).run(async move {
            let woke = Rc::new(Cell::new(None));
            let w = woke.clone();
            open_nursery(|n| async move {
                n.start_soon(async move {
                    sleep(secs(1)).await?;
                    w.set(Some(current_time()));
                    Ok::<_, Cancelled>(())
                })?;
                wait_all_tasks_blocked().await?; // the child's timer is armed
                c.jump(secs(1));
                Ok::<_, BoxError>(())
            })
            .await
            .unwrap();
            woke.get()
        })
    });
    assert_eq!(woke, Ok(Some(at(1))));
}

#[test]
fn c17_a_deadline_cancels_a_busy_loop_at_the_first_checkpoint_after_it_passed() {
    let clock = MockClock::new();
    let c = clock.clone();
    let (n, report) = Builder::new().seed(1).clock(clock).run_with_report(async move {
        let scope = CancelScope::with_deadline(at(1));
        let n = Cell::new(0);
        let out = scope
            .run(async {
                checkpoint().await?;
                c.jump(secs(1));
                // Bounded so that a runtime that only expires deadlines when
                // idle fails here instead of hanging.
                while n.get() < 1000 {
                    checkpoint().await?;
                    n.set(n.get() + 1);
                }
                Ok::<_, Cancelled>(())
            })
            .await;
        assert_eq!(out, Ok(None));
        n.get()
    });
    // The first checkpoint spans a pass boundary, where the deadline expired.
    assert_eq!(n, 0);
    assert_eq!(report.timers_left, 0);
}

#[test]
fn c17_many_sleeping_tasks_all_wake_in_deadline_order() {
    // 200,000 tasks, each sleeping until one of 1,000 distinct deadlines
    // (scattered, not in spawn order). With autojump, each idle moment jumps
    // to the next deadline and one pass runs everybody due then, so the wake
    // log must be sorted by deadline and every task must wake exactly at its
    // own deadline.
    //
    // Why 200k and not 1M: a million *tasks* take ~5 s and ~330 MB in a debug
    // build (task allocation and stepping, not timers). A million pending
    // *timers* are covered cheaply by the next test, in one task.
    const N: u64 = 200_000;
    const DISTINCT: u64 = 1_000;
    let woke = Rc::new(RefCell::new(Vec::with_capacity(N as usize)));
    let late = Rc::new(Cell::new(0u64));
    let (w, lt) = (woke.clone(), late.clone());
    let (out, report) = Builder::new().seed(1).clock(autojump_clock()).run_with_report(open_nursery(|n| async move {
        for i in 0..N {
            let deadline = Instant::ZERO + Duration::from_millis((i * 7919) % DISTINCT + 1);
            let (w, lt) = (w.clone(), lt.clone());
            n.start_soon(async move {
                sleep_until(deadline).await?;
                if current_time() != deadline {
                    lt.set(lt.get() + 1);
                }
                w.borrow_mut().push(deadline.as_nanos());
                Ok::<_, Cancelled>(())
            })?;
        }
        Ok::<_, BoxError>(())
    }));
    assert_eq!(out.unwrap(), Some(()));
    let woke = woke.borrow();
    assert_eq!(woke.len() as u64, N);
    assert_eq!(late.get(), 0, "tasks woke at a time other than their deadline");
    assert!(woke.windows(2).all(|p| p[0] <= p[1]), "sleeps completed out of deadline order");
    assert_eq!(*woke.first().unwrap(), 1_000_000);
    assert_eq!(*woke.last().unwrap(), DISTINCT * 1_000_000);
    assert_eq!(report.timers_left, 0);
    assert_eq!(report.tasks_left, 0);
}

/// A waker that records which sleep it belongs to when woken.
struct RecordWake {
    index: u32,
    log: Arc<Mutex<Vec<u32>>>,
}

impl Wake for RecordWake {
    fn wake(self: Arc<Self>) {
        self.log.lock().unwrap().push(self.index);
    }
}

#[test]
fn c17_a_million_pending_sleeps_fire_in_deadline_order_and_all_complete() {
    // One task arms a million sleeps at once (each polled with its own
    // recording waker), over 1,000 distinct deadlines in scattered order,
    // then blocks until after the last one. Autojump walks through the
    // deadlines one idle round each; every timer must fire exactly once, in
    // deadline order (ties in the order they were armed), and every sleep
    // must then complete with Ok. (A million *distinct* deadlines would cost
    // a million idle rounds, each with an epoll_wait syscall: ~5 s.)
    const N: u32 = 1_000_000;
    const DISTINCT: u64 = 1_000;
    fn deadline(i: u32) -> Instant {
        Instant::ZERO + Duration::from_millis((u64::from(i) * 7919) % DISTINCT + 1)
    }
    let fired = Arc::new(Mutex::new(Vec::with_capacity(N as usize)));
    let f = fired.clone();
    let (completed, report) = Builder::new().seed(1).clock(autojump_clock()).run_with_report(async move {
        let mut sleeps: Vec<Sleep> = (0..N).map(|i| sleep_until(deadline(i))).collect();
        poll_fn(|_| {
            for (i, s) in sleeps.iter_mut().enumerate() {
                let waker = Waker::from(Arc::new(RecordWake { index: i as u32, log: f.clone() }));
                assert!(Pin::new(s).poll(&mut Context::from_waker(&waker)).is_pending());
            }
            Poll::Ready(())
        })
        .await;
        assert_eq!(f.lock().unwrap().len(), 0);
        let last = Instant::ZERO + Duration::from_millis(DISTINCT);
        sleep_until(last + Duration::from_millis(1)).await.unwrap();
        let mut completed = 0u32;
        poll_fn(|cx| {
            for s in &mut sleeps {
                if Pin::new(s).poll(cx) == Poll::Ready(Ok(())) {
                    completed += 1;
                }
            }
            Poll::Ready(())
        })
        .await;
        completed
    });
    assert_eq!(completed, N);
    let fired = fired.lock().unwrap();
    assert_eq!(fired.len(), N as usize, "every sleep's timer fires exactly once");
    assert!(
        fired.windows(2).all(|p| (deadline(p[0]), p[0]) < (deadline(p[1]), p[1])),
        "timers fired out of deadline order"
    );
    assert_eq!(report.timers_left, 0);
}

#[test]
fn c17_setting_moving_and_cancelling_a_million_timers_leaves_none_behind() {
    const N: u64 = 1_000_000;
    let clock = autojump_clock();
    let (fired_at, report) = Builder::new().seed(1).clock(clock).run_with_report(async {
        // 1. A million sleeps armed (one poll) and dropped: each drop cancels
        //    its timer.
        for i in 0..N {
            let mut s = pin!(sleep(Duration::from_nanos(i + 1)));
            poll_once(s.as_mut()).await;
        }
        // 2. A million timeout scopes entered and exited before their
        //    deadline: each exit cancels its timer.
        for i in 0..N {
            let r = move_on_after(Duration::from_nanos(i + 1), async { Ok::<_, Cancelled>(i) }).await;
            assert_eq!(r, Ok(Some(i)));
        }
        // 3. One deadline moved a million times, back and forth; it fires at
        //    its last value only.
        let scope = CancelScope::new();
        let out = scope
            .run(async {
                for i in 0..N {
                    scope.set_deadline(at(10 + (i % 2) * 1000 + i % 7));
                }
                scope.set_deadline(at(42));
                forever().await?;
                Ok::<_, Cancelled>(())
            })
            .await;
        assert_eq!(out, Ok(None));
        current_time()
    });
    assert_eq!(fired_at, at(42));
    assert_eq!(report.timers_left, 0);
    assert_eq!(report.tasks_left, 0);
}
