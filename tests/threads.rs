//! `to_thread::run_sync` and `from_thread`: results, panics, the limiter,
//! both cancellation modes, calls back into the run, and the errors of
//! calls that cannot be served.
//!
//! Timing runs on a `MockClock` whose autojump threshold (50 ms of real
//! quiet) leaves worker threads time to report: a jump happens only when
//! nothing, threads included, has woken the runtime for that long.

use std::collections::HashSet;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::Duration;

use trioxide::from_thread::{self, current_handle, FromThreadError};
use trioxide::sync::CapacityLimiter;
use trioxide::{
    checkpoint, current_time, io_error_kind, move_on_after, open_nursery, sleep, to_thread, wait_all_tasks_blocked,
    BoxError, Builder, Cancelled, IoErrorKind, MockClock,
};

fn clock() -> MockClock {
    let c = MockClock::new();
    c.set_autojump_threshold(Some(Duration::from_millis(50)));
    c
}

/// A gate that closures block on until the test opens it.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn wait(&self) {
        let (m, cv) = &*self.0;
        let mut open = m.lock().unwrap();
        while !*open {
            open = cv.wait(open).unwrap();
        }
    }
    fn open(&self) {
        let (m, cv) = &*self.0;
        *m.lock().unwrap() = true;
        cv.notify_all();
    }
}

/// Waits (blocking this thread) until `counter` reaches `n`.
fn wait_for_count(counter: &Arc<(Mutex<usize>, Condvar)>, n: usize) {
    let (m, cv) = &**counter;
    let mut c = m.lock().unwrap();
    while *c < n {
        c = cv.wait(c).unwrap();
    }
}

fn bump(counter: &Arc<(Mutex<usize>, Condvar)>) {
    let (m, cv) = &**counter;
    *m.lock().unwrap() += 1;
    cv.notify_all();
}

#[test]
fn run_sync_returns_the_closures_value_from_another_thread() {
    let main_thread = std::thread::current().id();
    let (v, other) =
        trioxide::run(
            async move { to_thread::run_sync(move || (6 * 7, std::thread::current().id() != main_thread)).await },
        )
        .unwrap();
    assert_eq!(v, 42);
    assert!(other, "the closure ran on the runtime's own thread");
}

#[test]
fn a_panic_in_the_closure_resumes_in_the_calling_task() {
    let r = catch_unwind(AssertUnwindSafe(|| {
        trioxide::run(async { to_thread::run_sync(|| -> u8 { panic!("boom in worker") }).await })
    }));
    let panic = r.expect_err("the panic must reach the caller");
    let msg = panic.downcast_ref::<&str>().copied().unwrap_or_default();
    assert_eq!(msg, "boom in worker");
}

#[test]
fn cancelled_before_starting_runs_nothing_and_reports_cancelled() {
    let ran = Arc::new(AtomicUsize::new(0));
    let r2 = ran.clone();
    let out = trioxide::run(async move {
        let scope = trioxide::CancelScope::new();
        scope.cancel();
        let mut seen = None;
        scope
            .run(async {
                let r = to_thread::run_sync(move || r2.fetch_add(1, Ordering::SeqCst)).await;
                seen = Some(r.map_err(|e| io_error_kind(&e)));
                Ok::<_, Cancelled>(())
            })
            .await
            .unwrap();
        seen
    });
    assert_eq!(out, Some(Err(Some(IoErrorKind::Cancelled))));
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

#[test]
fn the_limiter_bounds_how_many_closures_run_at_once() {
    const LIMIT: usize = 2;
    const CALLS: usize = 6;
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let started = Arc::new((Mutex::new(0usize), Condvar::new()));
    let gate = Gate::default();
    let (running2, most2, started2, gate2) = (running.clone(), most.clone(), started.clone(), gate.clone());
    Builder::new()
        .seed(3)
        .run(open_nursery(move |n| async move {
            let limiter = Rc::new(CapacityLimiter::new(LIMIT));
            for _ in 0..CALLS {
                let (running, most, started, gate) = (running2.clone(), most2.clone(), started2.clone(), gate2.clone());
                let limiter = limiter.clone();
                n.start_soon(async move {
                    to_thread::run_sync(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        bump(&started);
                        gate.wait();
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                    .limiter(limiter)
                    .await
                })?;
            }
            // Wait (on a thread of the default limiter) until LIMIT closures
            // have started; the others must be queued on the limiter.
            let s = started2.clone();
            to_thread::run_sync(move || wait_for_count(&s, LIMIT)).await?;
            wait_all_tasks_blocked().await?;
            assert_eq!(limiter.borrowed_tokens(), LIMIT);
            assert_eq!(limiter.statistics().tasks_waiting, CALLS - LIMIT);
            assert_eq!(*started2.0.lock().unwrap(), LIMIT);
            gate2.open();
            Ok::<_, BoxError>(())
        }))
        .unwrap();
    assert_eq!(most.load(Ordering::SeqCst), LIMIT);
    assert_eq!(*started.0.lock().unwrap(), CALLS);
    assert_eq!(running.load(Ordering::SeqCst), 0);
}

#[test]
fn the_default_limiter_has_trios_40_tokens_and_is_per_run() {
    for _ in 0..2 {
        trioxide::run(async {
            let l = to_thread::current_default_thread_limiter();
            assert_eq!(l.total_tokens(), to_thread::DEFAULT_THREAD_LIMIT);
            assert_eq!(to_thread::DEFAULT_THREAD_LIMIT, 40);
            // Shrinking it in one run does not leak into the next.
            l.set_total_tokens(1);
        });
    }
}

#[test]
fn without_abandon_a_cancel_waits_for_the_closure_and_returns_its_value() {
    let gate = Gate::default();
    let g2 = gate.clone();
    let (moved_on, got, t0) = Builder::new()
        .clock(clock())
        .run(open_nursery(move |n| async move {
            let t0 = current_time();
            // Opens the gate at t0 + 2 s of virtual time, after the deadline.
            n.start_soon(async move {
                sleep(Duration::from_secs(2)).await?;
                gate.open();
                Ok::<_, Cancelled>(())
            })?;
            let mut got = None;
            let moved_on = move_on_after(Duration::from_secs(1), async {
                let v = to_thread::run_sync(move || {
                    g2.wait();
                    "finished"
                })
                .await;
                got = Some((v.map_err(|e| io_error_kind(&e)), current_time()));
                // The cancellation is delivered at the next checkpoint.
                checkpoint().await?;
                Ok::<_, Cancelled>(())
            })
            .await;
            Ok::<_, BoxError>((moved_on, got, t0))
        }))
        .unwrap()
        .unwrap();
    assert_eq!(moved_on, Ok(None), "the scope caught its cancellation at the checkpoint after");
    let (value, when) = got.expect("the closure's result came back");
    assert_eq!(value, Ok("finished"));
    assert_eq!(when, t0 + Duration::from_secs(2), "it waited for the closure past the 1 s deadline");
}

#[test]
fn with_abandon_a_cancel_returns_at_once_and_the_token_comes_back_when_the_thread_ends() {
    let gate = Gate::default();
    let finished = Arc::new(AtomicUsize::new(0));
    let (g2, f2) = (gate.clone(), finished.clone());
    Builder::new()
        .clock(clock())
        .run(async move {
            let limiter = Rc::new(CapacityLimiter::new(1));
            let t0 = current_time();
            let r = move_on_after(Duration::from_secs(2), async {
                to_thread::run_sync(move || {
                    g2.wait();
                    f2.fetch_add(1, Ordering::SeqCst);
                })
                .abandon_on_cancel(true)
                .limiter(limiter.clone())
                .await?;
                Ok::<_, io::Error>(())
            })
            .await;
            assert!(matches!(r, Ok(None)), "abandoned at the deadline");
            assert_eq!(current_time(), t0 + Duration::from_secs(2));
            assert_eq!(finished.load(Ordering::SeqCst), 0, "the closure is still running");
            // The token stays borrowed while the abandoned closure runs.
            assert_eq!(limiter.borrowed_tokens(), 1);
            gate.open();
            // The next call through the limiter waits for that token.
            let v = to_thread::run_sync(|| 9).limiter(limiter.clone()).await?;
            assert_eq!(v, 9);
            assert_eq!(finished.load(Ordering::SeqCst), 1);
            assert_eq!(limiter.borrowed_tokens(), 0);
            Ok::<_, io::Error>(())
        })
        .unwrap();
}

#[test]
fn worker_threads_are_reused() {
    let ids = trioxide::run(async {
        let mut ids = HashSet::new();
        for _ in 0..50 {
            ids.insert(to_thread::run_sync(|| std::thread::current().id()).await?);
        }
        Ok::<_, io::Error>(ids)
    })
    .unwrap();
    // A thread that just delivered a result may not be idle yet when the
    // next call comes, so a few threads may be started; never one per call.
    assert!(ids.len() <= 10, "{} threads for 50 sequential calls", ids.len());
}

#[test]
fn from_thread_run_sync_runs_on_the_runtime_thread() {
    let (runtime_thread, ran_on) = trioxide::run(async {
        let here = std::thread::current().id();
        let there = to_thread::run_sync(|| from_thread::run_sync(|| std::thread::current().id())).await?;
        Ok::<_, BoxError>((here, there?))
    })
    .unwrap();
    assert_eq!(runtime_thread, ran_on);
}

#[test]
fn from_thread_run_drives_a_future_on_the_run_in_virtual_time() {
    let out = Builder::new()
        .clock(clock())
        .run(async {
            let t0 = current_time();
            let r = to_thread::run_sync(|| {
                from_thread::run(|| async {
                    sleep(Duration::from_secs(30)).await?;
                    Ok::<_, Cancelled>(current_time())
                })
            })
            .await?;
            Ok::<_, BoxError>((t0, r??))
        })
        .unwrap();
    assert_eq!(out.1, out.0 + Duration::from_secs(30));
}

#[test]
fn a_handle_serves_plain_os_threads_and_their_panics_come_back() {
    trioxide::run(async {
        let handle = current_handle();
        let h2 = handle.clone();
        let joined = to_thread::run_sync(move || {
            let a = std::thread::spawn(move || h2.run_sync(|| 5)).join().unwrap();
            let b = catch_unwind(AssertUnwindSafe(|| handle.run_sync(|| -> u8 { panic!("on the runtime") })));
            (a, b.is_err())
        })
        .await?;
        assert_eq!(joined, (Ok(5), true));
        Ok::<_, BoxError>(())
    })
    .unwrap();
}

#[test]
fn calls_that_cannot_be_served_get_clear_errors() {
    // On the runtime thread itself: refused (it would deadlock).
    let (on_runtime, handle) = trioxide::run(async {
        let h = current_handle();
        (h.run_sync(|| ()), h)
    });
    assert_eq!(on_runtime, Err(FromThreadError::OnRuntimeThread));
    // After the run: refused.
    assert_eq!(handle.run_sync(|| ()), Err(FromThreadError::RunFinished));
    assert_eq!(handle.run(|| async {}), Err(FromThreadError::RunFinished));
    // The free functions outside a worker thread.
    assert_eq!(from_thread::run_sync(|| ()), Err(FromThreadError::NotAWorkerThread));
}

#[test]
fn from_thread_run_is_cancelled_when_main_returns() {
    // A plain thread keeps calling into the run; main returns meanwhile.
    let (tx, rx) = mpsc::channel();
    trioxide::run(async move {
        let h = current_handle();
        std::thread::spawn(move || {
            let r = h.run(|| async { trioxide::sleep_forever().await });
            let _ = tx.send(r);
        });
        // Give the job time to arrive, then return: the system task is
        // cancelled with the run.
        to_thread::run_sync(|| std::thread::sleep(Duration::from_millis(100))).await.unwrap();
    });
    let r = rx.recv_timeout(Duration::from_secs(10)).expect("the thread got an answer");
    // Either the task ran and was cancelled, or the run ended before it ran.
    assert!(matches!(r, Ok(Err(Cancelled)) | Err(FromThreadError::RunFinished)), "{r:?}");
}
