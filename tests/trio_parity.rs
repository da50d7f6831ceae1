//! Trio parity (issue 11): each test mirrors the Trio test named in its
//! name and doc comment, translated to Rust (Trio's `Cancelled` is a
//! checkpoint's `Err(Cancelled)`, its `RuntimeError`s are typed errors).
//!
//! Conventions: exact values and exact event sequences; scheduling is
//! pinned with `Builder::seed` (several seeds where the order of a pass
//! could matter); anything that waits for time uses a `MockClock` with
//! autojump, so no test sleeps for real.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use trioxide::{
    checkpoint, current_task, current_time, open_nursery, sleep, wait_all_tasks_blocked, BoxError, Builder,
    CancelScope, Cancelled, MockClock, StartError, TaskStatus,
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
            r.target, "Err(1 error(s) in nursery: [0] child exited without calling task_status.started())",
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
