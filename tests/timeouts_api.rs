//! The timeouts' scope API (issue 11): `MoveOn` / `FailAfter` expose their
//! cancel scope (`.shield(..)`, `.scope()`), `CancelScope::relative_deadline`
//! and `current_effective_deadline`. Tests are named after the Trio tests
//! they mirror (`test_timeouts.py`, `test_run.py`; paths in RULES.md) where
//! one exists; the rest pin down the timeouts' lazily made scope node
//! (DESIGN.md §3, "Timeouts enter lazily"): a timeout whose first poll
//! needed no node must behave exactly like one that had a node all along.
//!
//! Every test runs on a `MockClock` with a fixed seed and asserts exact
//! instants.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use trioxide::{
    checkpoint, checkpoint_if_cancelled, current_effective_deadline, current_time, fail_after, fail_at, move_on_after,
    move_on_at, open_nursery, sleep, sleep_forever, BoxError, Builder, CancelScope, Cancelled, Instant, MockClock,
    TooSlow,
};

// ---------------------------------------------------------------- helpers

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The instant `n` seconds after the clock's origin.
fn at(n: u64) -> Instant {
    Instant::ZERO + secs(n)
}

fn autojump_clock() -> MockClock {
    let clock = MockClock::new();
    clock.set_autojump_threshold(Some(Duration::ZERO));
    clock
}

/// Runs `main` with a fixed seed on an autojumping mock clock, and checks
/// that the run left no task and no timer behind.
fn run_mock<F: Future>(main: F) -> F::Output {
    run_on(autojump_clock(), main)
}

fn run_on<F: Future>(clock: MockClock, main: F) -> F::Output {
    let (out, report) = Builder::new().seed(7).clock(clock).run_with_report(main);
    assert_eq!(report.tasks_left, 0, "tasks left behind");
    assert_eq!(report.timers_left, 0, "timers left behind");
    out
}

async fn forever() -> Result<(), Cancelled> {
    match sleep_forever().await {
        Ok(never) => match never {},
        Err(c) => Err(c),
    }
}

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

type ScopeFuture = Pin<Box<dyn Future<Output = Result<Option<()>, Cancelled>>>>;

// ------------------------------------------------- test_timeouts.py mirrors

/// `test_timeouts.py::test_context_shields_from_outer`, for `move_on_after`:
/// the shield keeps the outer cancellation out until it is lowered through
/// the scope handle.
#[test]
fn test_context_shields_from_outer_move_on_after() {
    let out = run_mock(async {
        let outer = CancelScope::new();
        let handle: RefCell<Option<CancelScope>> = RefCell::new(None);
        outer
            .run(async {
                let inner = move_on_after(secs(1), async {
                    outer.cancel();
                    assert_eq!(checkpoint().await, Ok(()), "shield didn't work");
                    handle.borrow().as_ref().expect("handle").set_shield(false);
                    assert_eq!(checkpoint().await, Err(Cancelled));
                    Err::<(), _>(Cancelled)
                })
                .shield(true);
                *handle.borrow_mut() = Some(inner.scope());
                // The outer scope's cancellation passes through the timeout.
                assert_eq!(inner.await, Err(Cancelled));
                Err::<(), _>(Cancelled)
            })
            .await
            .map(|o| (o, current_time()))
    });
    assert_eq!(out, Ok((None, at(0))));
}

/// `test_timeouts.py::test_context_shields_from_outer`, for `fail_after`.
#[test]
fn test_context_shields_from_outer_fail_after() {
    let out = run_mock(async {
        let outer = CancelScope::new();
        let handle: RefCell<Option<CancelScope>> = RefCell::new(None);
        outer
            .run(async {
                let inner = fail_after(secs(1), async {
                    outer.cancel();
                    assert_eq!(checkpoint().await, Ok(()), "shield didn't work");
                    handle.borrow().as_ref().expect("handle").set_shield(false);
                    assert_eq!(checkpoint().await, Err(Cancelled));
                    Err::<(), BoxError>(Cancelled.into())
                })
                .shield(true);
                *handle.borrow_mut() = Some(inner.scope());
                // Not TooSlow: the timeout caught nothing.
                let e = inner.await.unwrap_err();
                assert!(e.is::<Cancelled>(), "{e}");
                Err::<(), _>(Cancelled)
            })
            .await
    });
    assert_eq!(out, Ok(None));
}

/// `test_timeouts.py::test_move_on_after_moves_on_even_if_shielded`.
#[test]
fn test_move_on_after_moves_on_even_if_shielded() {
    let out = run_mock(async {
        let outer = CancelScope::new();
        outer
            .run(async {
                outer.cancel();
                let r = move_on_after(secs(1), forever()).shield(true).await;
                Ok::<_, Cancelled>((r, current_time()))
            })
            .await
    });
    assert_eq!(out, Ok(Some((Ok(None), at(1)))));
}

/// `test_timeouts.py::test_fail_after_fails_even_if_shielded`.
#[test]
fn test_fail_after_fails_even_if_shielded() {
    let out = run_mock(async {
        let outer = CancelScope::new();
        outer
            .run(async {
                outer.cancel();
                let r: Result<(), BoxError> = fail_after(secs(1), async {
                    forever().await?;
                    Ok(())
                })
                .shield(true)
                .await;
                Ok::<_, Cancelled>((r.unwrap_err().is::<TooSlow>(), current_time()))
            })
            .await
    });
    assert_eq!(out, Ok(Some((true, at(1)))));
}

/// `test_timeouts.py::test_sleep`'s last lines: the trivial `move_on_at`.
#[test]
fn test_sleep_trivial_move_on_at() {
    let out = run_mock(async {
        move_on_at(current_time(), async {
            assert_eq!(sleep(Duration::ZERO).await, Err(Cancelled));
            Err::<(), _>(Cancelled)
        })
        .await
    });
    assert_eq!(out, Ok(None));
}

/// `test_timeouts.py::test_timeout_deadline_on_entry`. Trio enters the
/// scope `move_on_after` returned; here the handle taken before awaiting is
/// that same scope, read from inside the body.
#[test]
fn test_timeout_deadline_on_entry() {
    let clock = MockClock::new();
    let c = clock.clone();
    run_on(clock, async move {
        let slot: Rc<RefCell<Option<CancelScope>>> = Rc::new(RefCell::new(None));
        let s = slot.clone();
        let rcs = move_on_after(secs(5), async move {
            let cs = s.borrow().clone().expect("handle stored before entry");
            let start = current_time();
            // Counted from entry, not from when the timeout was built.
            assert_eq!(cs.deadline(), start + secs(5));
            assert_eq!(cs.relative_deadline(), Some(secs(5)));

            cs.set_deadline(start + secs(3));
            assert_eq!(cs.deadline(), start + secs(3));
            assert_eq!(cs.relative_deadline(), Some(secs(3)));

            cs.set_relative_deadline(secs(4));
            assert_eq!(cs.deadline(), start + secs(4));
            assert_eq!(cs.relative_deadline(), Some(secs(4)));
            Ok::<_, Cancelled>(start)
        });
        let cs = rcs.scope();
        assert_eq!(cs.relative_deadline(), Some(secs(5)));
        *slot.borrow_mut() = Some(cs.clone());
        c.jump(secs(3));
        let start = rcs.await.expect("no error").expect("not cancelled");
        assert_eq!(start, at(3));
        assert_eq!(cs.deadline(), at(7));

        let rcs = move_on_after(secs(5), async { Ok::<_, Cancelled>(current_time()) });
        let cs = rcs.scope();
        assert!(!cs.shield());
        let rcs = rcs.shield(true);
        assert!(cs.shield());
        c.jump(secs(3));
        let start = rcs.await.expect("no error").expect("not cancelled");
        assert_eq!(start, at(6));
        assert_eq!(cs.deadline(), start + secs(5));
        assert!(cs.shield());
    });
}

/// `test_timeouts.py::test_invalid_access_unentered`. Trio raises
/// `RuntimeError` for both reads; trioxide answers (DESIGN.md, differences
/// from Trio): an unentered relative scope has no absolute deadline yet
/// (`FAR_FUTURE`), and an unentered absolute one has the time left as its
/// relative deadline.
#[test]
fn test_invalid_access_unentered() {
    let clock = MockClock::new();
    let c = clock.clone();
    run_on(clock, async move {
        let cs = move_on_after(secs(5), async { Ok::<_, Cancelled>(()) }).scope();
        assert_eq!(cs.deadline(), Instant::FAR_FUTURE);
        assert_eq!(cs.relative_deadline(), Some(secs(5)));

        let cs = move_on_at(at(5), async { Ok::<_, Cancelled>(()) }).scope();
        assert_eq!(cs.deadline(), at(5));
        assert_eq!(cs.relative_deadline(), Some(secs(5)));
        c.jump(secs(2));
        assert_eq!(cs.relative_deadline(), Some(secs(3)));
        c.jump(secs(4));
        assert_eq!(cs.relative_deadline(), Some(Duration::ZERO), "a passed deadline saturates at zero");
    });
}

/// `test_timeouts.py::test_fail_access_before_entering` (an xfail in Trio:
/// "not implemented"); trioxide's `fail_*` expose their scope like
/// `move_on_*`.
#[test]
fn test_fail_access_before_entering() {
    run_mock(async {
        let my_fail_at = fail_at(at(5), async { Ok::<_, BoxError>(()) });
        assert_eq!(my_fail_at.scope().deadline(), at(5));
        let my_fail_after = fail_after(secs(5), async { Ok::<_, BoxError>(()) });
        assert_eq!(my_fail_after.scope().relative_deadline(), Some(secs(5)));
        my_fail_at.await.unwrap();
        my_fail_after.await.unwrap();
    });
}

// ------------------------------------------------------ test_run.py mirrors

/// `test_run.py::test_cancel_scope_validation`'s last lines.
#[test]
fn test_cancel_scope_validation_relative_deadline() {
    let scope = CancelScope::new();
    assert_eq!(scope.relative_deadline(), None);
    scope.set_relative_deadline(secs(5));
    assert_eq!(scope.relative_deadline(), Some(secs(5)));
}

/// `test_run.py::test_current_effective_deadline`.
#[test]
fn test_current_effective_deadline() {
    run_on(MockClock::new(), async {
        assert_eq!(current_effective_deadline(), Instant::FAR_FUTURE);
        let scope1 = CancelScope::with_deadline(at(5));
        scope1
            .run(async {
                let scope2 = CancelScope::with_deadline(at(10));
                scope2
                    .run(async {
                        assert_eq!(current_effective_deadline(), at(5));
                        scope2.set_deadline(at(3));
                        assert_eq!(current_effective_deadline(), at(3));
                        scope2.set_deadline(at(10));
                        assert_eq!(current_effective_deadline(), at(5));
                        scope2.set_shield(true);
                        assert_eq!(current_effective_deadline(), at(10));
                        scope2.set_shield(false);
                        assert_eq!(current_effective_deadline(), at(5));
                        scope1.cancel();
                        // Trio: -inf.
                        assert_eq!(current_effective_deadline(), Instant::ZERO);
                        scope2.set_shield(true);
                        assert_eq!(current_effective_deadline(), at(10));
                        Ok::<_, Cancelled>(())
                    })
                    .await?;
                assert_eq!(current_effective_deadline(), Instant::ZERO);
                Ok::<_, Cancelled>(())
            })
            .await
            .unwrap();
        assert_eq!(current_effective_deadline(), Instant::FAR_FUTURE);
    });
}

/// `test_run.py::test_current_effective_deadline`, with timeouts instead of
/// scopes: each answer is given while the timeouts are still in their first
/// poll (no node made).
#[test]
fn test_current_effective_deadline_through_timeouts() {
    run_on(MockClock::new(), async {
        move_on_at(at(5), async {
            move_on_at(at(10), async {
                assert_eq!(current_effective_deadline(), at(5));
                move_on_after(secs(3), async {
                    assert_eq!(current_effective_deadline(), at(3));
                    Ok::<_, Cancelled>(())
                })
                .await?;
                move_on_at(at(20), async {
                    assert_eq!(current_effective_deadline(), at(20));
                    Ok::<_, Cancelled>(())
                })
                .shield(true)
                .await?;
                // A shielded scope between: the transparent timeout inside
                // it counts, the ones outside it do not.
                CancelScope::shielded()
                    .run(async {
                        assert_eq!(current_effective_deadline(), Instant::FAR_FUTURE);
                        move_on_after(secs(7), async {
                            assert_eq!(current_effective_deadline(), at(7));
                            Ok::<_, Cancelled>(())
                        })
                        .await
                    })
                    .await?;
                // After a checkpoint (the timeouts now have their nodes).
                checkpoint().await?;
                assert_eq!(current_effective_deadline(), at(5));
                Ok::<_, Cancelled>(())
            })
            .await?;
            Ok::<_, Cancelled>(())
        })
        .await
        .unwrap();
    });
}

// ------------------------------------------------ the scope handle, after

#[test]
fn scope_handle_reports_what_happened_after_completion() {
    run_mock(async {
        // Finished at once.
        let t = move_on_after(secs(1), async { Ok::<_, Cancelled>(1) });
        let s = t.scope();
        assert_eq!(t.await, Ok(Some(1)));
        assert!(!s.cancel_called() && !s.cancelled_caught());
        // Expired.
        let t = move_on_after(secs(1), async {
            forever().await?;
            Ok::<_, Cancelled>(2)
        });
        let s = t.scope();
        assert_eq!(t.await, Ok(None));
        assert!(s.cancel_called() && s.cancelled_caught());
        assert_eq!(current_time(), at(1));
        // Cancelled by hand through the handle, from another task.
        let t = fail_after(secs(100), async {
            forever().await?;
            Ok::<_, BoxError>(())
        });
        let s = t.scope();
        let r = open_nursery(|n| async move {
            let s2 = s.clone();
            n.start_soon(async move {
                sleep(secs(2)).await?;
                s2.cancel();
                Ok::<_, Cancelled>(())
            })?;
            let r = t.await;
            assert!(s.cancel_called() && s.cancelled_caught());
            Ok::<_, BoxError>(r.unwrap_err().is::<TooSlow>())
        })
        .await;
        assert_eq!(r.unwrap(), Some(true));
        assert_eq!(current_time(), at(3));
    });
}

#[test]
fn scope_taken_after_a_first_poll_that_needed_no_node() {
    run_mock(async {
        let mut t = pin!(move_on_after(secs(4), async { Ok::<_, Cancelled>(()) }));
        assert_eq!(t.as_mut().await, Ok(Some(())));
        let s = t.scope();
        assert!(!s.cancel_called() && !s.cancelled_caught() && !s.shield());
        assert_eq!(s.deadline(), at(4));
        // Exited: cancelling it now does nothing to the code around it.
        s.cancel();
        assert_eq!(checkpoint().await, Ok(()));
    });
}

// --------------------------------------- a node made in the middle of a poll

/// The deadline counts from entry even when the body runs a long time
/// before it first blocks: the clock is read when the timeout is entered,
/// not when it first needs a timer (DESIGN.md §3).
#[test]
fn deadline_counts_from_entry_even_if_the_body_runs_long_before_blocking() {
    let clock = MockClock::new();
    let c = clock.clone();
    let out = run_on(clock, async move {
        let r = move_on_after(secs(1), async {
            c.jump(secs(2)); // a long synchronous stretch, no checkpoint
            assert_eq!(checkpoint_if_cancelled(), Ok(()), "deadlines are noticed between passes");
            sleep(secs(10)).await?;
            Ok::<_, Cancelled>(())
        })
        .await;
        (r, current_time())
    });
    assert_eq!(out, (Ok(None), at(2)));
}

/// A nursery opened during a timeout's first poll hangs under the timeout,
/// so the deadline cancels its children (and the parent's cancellation
/// reaches them through the timeout).
#[test]
fn nursery_opened_in_a_first_poll_is_cancelled_by_the_timeout() {
    let out = run_mock(async {
        let r = move_on_after(secs(2), async {
            open_nursery(|n| async move {
                n.start_soon(forever())?;
                n.start_soon(async {
                    move_on_after(secs(1), forever()).await?;
                    forever().await
                })?;
                Ok::<_, BoxError>(())
            })
            .await
        })
        .await;
        (r.map(|o| o.map(|_| ())).map_err(|e| e.to_string()), current_time())
    });
    assert_eq!(out, (Ok(None), at(2)));
}

/// `start` during a timeout's first poll: the child's provisional root hangs
/// under the timeout.
#[test]
fn start_in_a_first_poll_is_cancelled_by_the_timeout() {
    let out = run_mock(open_nursery(|n| async move {
        let r = move_on_after(secs(3), async {
            n.start(|status: trioxide::TaskStatus<()>| async move {
                forever().await?;
                status.started(());
                Ok::<_, Cancelled>(())
            })
            .await
        })
        .await;
        assert!(r.is_ok(), "{r:?}");
        Ok::<_, BoxError>((r.unwrap().is_none(), current_time()))
    }));
    assert_eq!(out.unwrap(), Some((true, at(3))));
}

/// Nested timeouts whose first polls end blocked: each gets its node under
/// the right parent, and the earlier deadline wins, inner or outer.
#[test]
fn nested_timeouts_blocking_in_their_first_poll() {
    let out = run_mock(async {
        let a = move_on_after(secs(1), async {
            let inner = move_on_after(secs(10), forever()).await?;
            Ok::<_, Cancelled>(inner)
        })
        .await;
        let t_a = current_time();
        let b = move_on_after(secs(10), async {
            let inner = move_on_after(secs(1), forever()).await?;
            Ok::<_, Cancelled>(inner)
        })
        .await;
        (a, t_a, b, current_time())
    });
    assert_eq!(out, (Ok(None), at(1), Ok(Some(None)), at(2)));
}

/// A cancellation of the parent during the timeout's first poll is seen
/// inside (the parent's node serves as the current status), and the timeout
/// does not catch it.
#[test]
fn parent_cancelled_during_a_first_poll_passes_through() {
    let out = run_mock(async {
        let outer = CancelScope::new();
        let timed = move_on_after(secs(10), async {
            outer.cancel();
            checkpoint_if_cancelled()?;
            Ok::<_, Cancelled>(())
        });
        let s = timed.scope();
        let s_lazy: RefCell<Option<CancelScope>> = RefCell::new(None);
        let r = outer
            .run(async {
                let r = timed.await;
                assert_eq!(r, Err(Cancelled));
                // The same without a handle (no node made at all).
                let mut t2 = pin!(move_on_after(secs(10), async {
                    checkpoint_if_cancelled()?;
                    Ok::<_, Cancelled>(())
                }));
                let r2 = t2.as_mut().await;
                *s_lazy.borrow_mut() = Some(t2.scope());
                r2
            })
            .await;
        assert!(!s.cancelled_caught() && !s.cancel_called());
        let s_lazy = s_lazy.borrow().clone().expect("handle taken");
        assert!(!s_lazy.cancelled_caught() && !s_lazy.cancel_called());
        (r, outer.cancelled_caught())
    });
    assert_eq!(out, (Ok(None), true));
}

/// Rule C16 through a timeout that never needed a node: a scope entered
/// inside its first poll and still open when it exits is misnesting.
#[test]
fn c16_a_timeout_exiting_with_an_inner_scope_open_panics_with_misnesting() {
    let msg = panic_message(|| {
        run_on(autojump_clock(), async {
            let inner = CancelScope::new();
            let mut stash: Option<ScopeFuture> = None;
            let _ = move_on_after(secs(5), async {
                let mut fut = Box::pin(inner.run(forever()));
                poll_once(fut.as_mut()).await; // entered inside the timeout
                stash = Some(fut);
                Ok::<_, Cancelled>(())
            })
            .await;
            drop(stash);
        })
    });
    let msg = msg.expect("leaving a timeout with an inner scope still open must panic");
    assert!(msg.contains("misnesting"), "{msg}");
}

/// Rule C16: a scope entered outside a timeout and polled again during the
/// timeout's first poll (when it has no node) is polled out of place.
#[test]
fn c16_polling_a_scope_inside_a_transparent_timeout_panics_with_misnesting() {
    let msg = panic_message(|| {
        run_on(autojump_clock(), async {
            let inner = CancelScope::new();
            let mut fut = Box::pin(inner.run(forever()));
            poll_once(fut.as_mut()).await; // entered at the task's top level
            let _ = move_on_after(secs(5), async {
                let _ = poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
                Ok::<_, Cancelled>(())
            })
            .await;
        })
    });
    let msg = msg.expect("polling a scope inside a timeout it was not entered in must panic");
    assert!(msg.contains("misnesting"), "{msg}");
}

/// A scope entered inside a timeout's first poll and polled again in the
/// same poll is in place (its parent is the timeout's node, made for it).
#[test]
fn a_scope_polled_twice_in_a_first_poll_is_not_misnesting() {
    let out = run_mock(async {
        move_on_after(secs(5), async {
            let inner = CancelScope::new();
            let mut fut = pin!(inner.run(forever()));
            poll_once(fut.as_mut()).await;
            inner.cancel();
            let r = poll_fn(|cx| fut.as_mut().poll(cx)).await;
            Ok::<_, Cancelled>((r, current_time()))
        })
        .await
    });
    assert_eq!(out, Ok(Some((Ok(None), at(0)))));
}

/// A panic in a timeout's first poll leaves nothing behind: the next
/// timeouts of the same task work (the chain of first polls was restored).
#[test]
fn a_panic_in_a_first_poll_leaves_the_next_timeouts_working() {
    let out = run_mock(async {
        let caught = catch_unwind(AssertUnwindSafe(|| {
            let mut t = pin!(move_on_after(secs(1), async {
                panic!("boom");
                #[allow(unreachable_code)]
                Ok::<_, Cancelled>(())
            }));
            let waker = std::task::Waker::noop();
            let _ = t.as_mut().poll(&mut std::task::Context::from_waker(waker));
        }));
        assert!(caught.is_err());
        let r = move_on_after(secs(1), async {
            assert_eq!(current_effective_deadline(), at(1));
            forever().await?;
            Ok::<_, Cancelled>(())
        })
        .await;
        (r, current_time())
    });
    assert_eq!(out, (Ok(None), at(1)));
}
