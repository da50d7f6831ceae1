//! Sharded runs (issue 13, part 1): one run per thread, the first failure
//! cancels the others, every error arrives, a panic resumes on the caller
//! after the others finished.
//!
//! Shards are separate threads, so cancellation crosses threads in real
//! time: every test runs the sharded call on a helper thread and fails
//! (instead of hanging) if it takes longer than `SAFETY`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use trioxide::{
    run_sharded, sleep, sleep_forever, to_thread, BoxError, Builder, Cancelled, MockClock, MultiError, ShardError,
    ShardedBuilder,
};

mod shard_support;
use shard_support::bounded;

/// Each failing shard as (index, message), in the order reported.
fn shard_errors(err: &MultiError) -> Vec<(usize, String)> {
    err.iter()
        .map(|e| {
            let e = e.downcast_ref::<ShardError>().expect("every error is a ShardError");
            (e.shard(), e.error().to_string())
        })
        .collect()
}

/// Blocks the shard's runtime thread's worker (not the runtime) on a barrier
/// shared by `parties` shards: after it, every one of them is running.
async fn meet(barrier: &Arc<Barrier>) -> Result<(), BoxError> {
    let b = barrier.clone();
    to_thread::run_sync(move || {
        b.wait();
    })
    .await?;
    Ok(())
}

#[test]
fn one_shard_runs_on_the_calling_thread_and_returns_its_value() {
    let caller = thread::current().id();
    let out =
        run_sharded(
            1,
            |shard| async move { Ok::<_, BoxError>((shard.index(), shard.count(), thread::current().id())) },
        );
    assert_eq!(out.unwrap(), [(0, 1, caller)]);
}

#[test]
fn one_failing_shard_reports_its_error_as_shard_zero() {
    let err = run_sharded(1, |_| async { Err::<(), _>("boom") }).unwrap_err();
    assert_eq!(shard_errors(&err), [(0, "boom".to_string())]);
}

#[test]
fn zero_shards_run_nothing_and_return_no_values() {
    let calls = AtomicBool::new(false);
    let out = run_sharded(0, |_| async {
        calls.store(true, Ordering::SeqCst);
        Ok::<u32, BoxError>(1)
    });
    assert_eq!(out.unwrap(), Vec::<u32>::new());
    assert!(!calls.load(Ordering::SeqCst));
}

#[test]
fn two_shards_return_their_values_in_shard_order() {
    let out = bounded(|| {
        // Shard 0 finishes only after shard 1's main has returned its value,
        // so shard order is not the finishing order.
        let (tx, rx) = mpsc::channel::<()>();
        let tx = Mutex::new(tx);
        let rx = Arc::new(Mutex::new(rx));
        run_sharded(2, |shard| {
            let rx = rx.clone();
            let tx = tx.lock().unwrap().clone();
            async move {
                let value = format!("shard {} of {}", shard.index(), shard.count());
                if shard.index() == 0 {
                    to_thread::run_sync(move || rx.lock().unwrap().recv()).await??;
                } else {
                    tx.send(())?;
                }
                Ok::<_, BoxError>(value)
            }
        })
        .unwrap()
    });
    assert_eq!(out, ["shard 0 of 2", "shard 1 of 2"]);
}

#[test]
fn each_shard_runs_on_its_own_thread_and_shard_zero_on_the_callers() {
    let (caller, ids) = bounded(|| {
        let caller = thread::current().id();
        let barrier = Arc::new(Barrier::new(3));
        let ids: Vec<ThreadId> = run_sharded(3, |_| {
            let barrier = barrier.clone();
            async move {
                // All three at once: they really run side by side.
                meet(&barrier).await?;
                Ok::<_, BoxError>(thread::current().id())
            }
        })
        .unwrap();
        (caller, ids)
    });
    assert_eq!(ids[0], caller);
    assert_ne!(ids[1], ids[0]);
    assert_ne!(ids[2], ids[0]);
    assert_ne!(ids[2], ids[1]);
}

#[test]
fn each_shard_has_its_own_clock_and_seed() {
    let out = run_sharded_with_mock_clocks();
    assert_eq!(out, [(0, Duration::from_secs(3600)), (1, Duration::from_secs(7200))]);
}

fn run_sharded_with_mock_clocks() -> Vec<(u64, Duration)> {
    bounded(|| {
        ShardedBuilder::new(2)
            .configure(|shard| {
                let clock = MockClock::new();
                clock.set_autojump_threshold(Some(Duration::ZERO));
                Builder::new().clock(clock).seed(shard.index() as u64)
            })
            .run(|shard| async move {
                let t0 = trioxide::current_time();
                // Virtual time: an hour per shard index + 1, at once.
                sleep(Duration::from_secs(3600 * (shard.index() as u64 + 1))).await?;
                Ok::<_, BoxError>((trioxide::current_seed(), trioxide::current_time().saturating_duration_since(t0)))
            })
            .unwrap()
    })
}

#[test]
fn a_failing_shard_cancels_a_shard_sleeping_forever_and_only_its_error_is_reported() {
    let sleeper_saw = Arc::new(Mutex::new(None));
    let seen = sleeper_saw.clone();
    let (err, elapsed) = bounded(move || {
        let barrier = Arc::new(Barrier::new(2));
        let t0 = Instant::now();
        let err = run_sharded(2, |shard| {
            let (barrier, seen) = (barrier.clone(), seen.clone());
            async move {
                // Both shards are registered and running before shard 1 fails,
                // so the cancellation has to cross threads.
                meet(&barrier).await?;
                if shard.index() == 1 {
                    return Err::<(), BoxError>("shard 1 failed".into());
                }
                let r = sleep_forever().await;
                *seen.lock().unwrap() = Some(r.map(|_| ()));
                r?;
                Ok(())
            }
        })
        .unwrap_err();
        (err, t0.elapsed())
    });
    assert_eq!(shard_errors(&err), [(1, "shard 1 failed".to_string())]);
    assert_eq!(*sleeper_saw.lock().unwrap(), Some(Err(Cancelled)));
    assert!(elapsed < Duration::from_secs(10), "cancellation took {elapsed:?}");
}

#[test]
fn two_failing_shards_report_both_errors_in_shard_order() {
    let err = bounded(|| {
        let barrier = Arc::new(Barrier::new(2));
        run_sharded(2, |shard| {
            let barrier = barrier.clone();
            async move {
                meet(&barrier).await?;
                // No checkpoint after the meeting: each fails even if the
                // other's cancel message has arrived.
                Err::<(), BoxError>(format!("failure {}", shard.index()).into())
            }
        })
        .unwrap_err()
    });
    assert_eq!(shard_errors(&err), [(0, "failure 0".to_string()), (1, "failure 1".to_string())]);
}

#[test]
fn an_error_next_to_cancellations_inside_a_cancelled_shard_is_still_reported() {
    // Shard 0 is cancelled but its main turns the Cancelled into its own
    // error: that is a real failure, reported beside shard 1's.
    let err = bounded(|| {
        let barrier = Arc::new(Barrier::new(2));
        run_sharded(2, |shard| {
            let barrier = barrier.clone();
            async move {
                meet(&barrier).await?;
                if shard.index() == 1 {
                    return Err::<(), BoxError>("first".into());
                }
                match sleep_forever().await {
                    Err(Cancelled) => Err("cleanup failed while cancelled".into()),
                    Ok(never) => match never {},
                }
            }
        })
        .unwrap_err()
    });
    assert_eq!(shard_errors(&err), [(0, "cleanup failed while cancelled".to_string()), (1, "first".to_string())]);
}

#[test]
fn a_panic_in_a_shard_resumes_on_the_caller_after_the_sleeping_shard_finished() {
    let exited = Arc::new(AtomicBool::new(false));
    let flag = exited.clone();
    let (payload, exited_before_resume) = bounded(move || {
        let barrier = Arc::new(Barrier::new(2));
        let r = catch_unwind(AssertUnwindSafe(|| {
            run_sharded(2, |shard| {
                let (barrier, flag) = (barrier.clone(), flag.clone());
                async move {
                    meet(&barrier).await?;
                    if shard.index() == 1 {
                        panic!("shard 1 panicked");
                    }
                    let r = sleep_forever().await;
                    flag.store(true, Ordering::SeqCst);
                    r?;
                    Ok::<(), BoxError>(())
                }
            })
        }));
        // Read the flag here, as the panic arrives: shard 0 must be done.
        let exited_now = flag.load(Ordering::SeqCst);
        let payload = r.expect_err("the panic resumes on the caller");
        (payload.downcast_ref::<&str>().map(|s| s.to_string()), exited_now)
    });
    assert_eq!(payload.as_deref(), Some("shard 1 panicked"));
    assert!(exited_before_resume);
    assert!(exited.load(Ordering::SeqCst));
}

#[test]
fn a_shard_that_finished_before_another_fails_causes_no_hang() {
    // Shard 0 returns at once; shard 1 waits until shard 0's main is done,
    // then fails while shard 2 sleeps forever. Shard 0 may be finishing or
    // finished when the failure is signalled: neither may hang or error.
    let err = bounded(|| {
        let (tx, rx) = mpsc::channel::<()>();
        let tx = Mutex::new(tx);
        let rx = Arc::new(Mutex::new(rx));
        let barrier = Arc::new(Barrier::new(2)); // shards 1 and 2
        run_sharded(3, |shard| {
            let (barrier, rx) = (barrier.clone(), rx.clone());
            let tx = tx.lock().unwrap().clone();
            async move {
                match shard.index() {
                    0 => {
                        let _ = tx.send(());
                        Ok::<u32, BoxError>(0)
                    }
                    1 => {
                        to_thread::run_sync(move || rx.lock().unwrap().recv()).await??;
                        meet(&barrier).await?;
                        Err("shard 1 failed".into())
                    }
                    _ => {
                        meet(&barrier).await?;
                        sleep_forever().await?;
                        Ok(2)
                    }
                }
            }
        })
        .unwrap_err()
    });
    assert_eq!(shard_errors(&err), [(1, "shard 1 failed".to_string())]);
}

#[test]
fn a_failure_before_the_others_start_cancels_them_without_a_message() {
    // Shard 0 fails before shards 1..4 may have registered: those that
    // register later cancel themselves; none hangs, none reports.
    let err = bounded(|| {
        run_sharded(4, |shard| async move {
            if shard.index() == 0 {
                return Err::<(), BoxError>("early".into());
            }
            sleep_forever().await?;
            Ok(())
        })
        .unwrap_err()
    });
    assert_eq!(shard_errors(&err), [(0, "early".to_string())]);
}

#[test]
fn pinned_shards_run_and_return_their_values() {
    let out = bounded(|| {
        ShardedBuilder::new(2)
            .pin_to_cores(true)
            .run(|shard| async move { Ok::<_, BoxError>(shard.index() * 2) })
            .unwrap()
    });
    assert_eq!(out, [0, 2]);
}

#[test]
fn the_cancel_message_reaches_every_task_of_the_other_shard() {
    // Shard 0 runs a nursery of three children asleep forever; one message
    // from failing shard 1 cancels its scope, and with it all three.
    let cancelled_children = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = cancelled_children.clone();
    let err = bounded(move || {
        let barrier = Arc::new(Barrier::new(2));
        run_sharded(2, |shard| {
            let (barrier, count) = (barrier.clone(), count.clone());
            async move {
                if shard.index() == 1 {
                    meet(&barrier).await?;
                    return Err::<(), BoxError>("shard 1 failed".into());
                }
                trioxide::open_nursery(|n| async move {
                    for _ in 0..3 {
                        let count = count.clone();
                        n.start_soon(async move {
                            let r = sleep_forever().await;
                            if r == Err(Cancelled) {
                                count.fetch_add(1, Ordering::SeqCst);
                            }
                            r?;
                            Ok::<(), BoxError>(())
                        })?;
                    }
                    meet(&barrier).await?;
                    Ok::<(), BoxError>(())
                })
                .await?;
                Ok(())
            }
        })
        .unwrap_err()
    });
    assert_eq!(shard_errors(&err), [(1, "shard 1 failed".to_string())]);
    assert_eq!(cancelled_children.load(Ordering::SeqCst), 3);
}
