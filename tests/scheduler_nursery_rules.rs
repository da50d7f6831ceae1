//! One test (or a few) per rule of RULES.md (at the repository root),
//! sections "Scheduler" (S1–S4) and "Nurseries" (N1–N13). Each test is named
//! after its rule.
//!
//! Conventions:
//! * events are recorded into a shared [`Log`] and compared as exact
//!   sequences; where a rule allows two orders (a batch runs forwards or
//!   reversed, S2) the test accepts exactly those and nothing else;
//! * scheduling tests fix the seed with `Builder::seed`;
//! * everything that waits for time uses a `MockClock` with autojump, so no
//!   test sleeps for real (except S1's I/O-wait test, which sleeps 3 ms);
//! * errors are checked by type (`downcast_ref`) and value.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::error::Error as StdError;
use std::fmt;
use std::future::{poll_fn, Future};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use trioxide::{
    cancel_shielded_checkpoint, checkpoint, current_task, current_time, open_nursery, sleep, sleep_forever, task_tree,
    wait_all_tasks_blocked, BoxError, Builder, CancelScope, Cancelled, Instrument, MockClock, MultiError, Nursery,
    NurseryClosed, StartError, TaskId, TaskStatus, SEED_ENV,
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

/// A virtual clock that jumps to the next deadline whenever every task is
/// blocked: timeouts take no real time.
fn autojump_clock() -> MockClock {
    let clock = MockClock::new();
    clock.set_autojump_threshold(Some(Duration::ZERO));
    clock
}

/// Whole seconds of virtual time since the start of the run.
fn secs() -> u64 {
    current_time().as_nanos() / 1_000_000_000
}

/// A test error with a tag, so each failure can be told apart.
#[derive(Debug, PartialEq, Eq)]
struct Fail(&'static str);

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "failure {}", self.0)
    }
}

impl StdError for Fail {}

fn fail(tag: &'static str) -> BoxError {
    Box::new(Fail(tag))
}

/// Names an error by its exact type (and value where it has one).
fn describe_err(e: &(dyn StdError + 'static)) -> String {
    if e.is::<Cancelled>() {
        "Cancelled".to_string()
    } else if e.is::<NurseryClosed>() {
        "NurseryClosed".to_string()
    } else if let Some(s) = e.downcast_ref::<StartError>() {
        format!("StartError::{s:?}")
    } else if let Some(f) = e.downcast_ref::<Fail>() {
        format!("{f:?}")
    } else if let Some(m) = e.downcast_ref::<MultiError>() {
        let inner: Vec<String> = m.errors().iter().map(|e| describe_err(e.as_ref())).collect();
        format!("MultiError[{}]", inner.join(", "))
    } else {
        format!("unexpected error: {e}")
    }
}

fn describe<T: fmt::Debug>(r: &Result<T, BoxError>) -> String {
    match r {
        Ok(v) => format!("Ok({v:?})"),
        Err(e) => format!("Err({})", describe_err(e.as_ref())),
    }
}

fn describe_multi<T: fmt::Debug>(r: &Result<T, MultiError>) -> String {
    match r {
        Ok(v) => format!("Ok({v:?})"),
        Err(e) => format!("Err({})", describe_err(e)),
    }
}

fn panic_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_string()
    }
}

/// Polls `fut`, turning a panic out of it into `Err(payload)`.
async fn catch_panic<F: Future>(fut: F) -> std::thread::Result<F::Output> {
    let mut fut = pin!(fut);
    poll_fn(move |cx| match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
        Ok(Poll::Pending) => Poll::Pending,
        Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
        Err(panic) => Poll::Ready(Err(panic)),
    })
    .await
}

fn strings(events: &[&str]) -> Vec<String> {
    events.iter().map(|s| s.to_string()).collect()
}

fn sorted(events: &[String]) -> Vec<String> {
    let mut v = events.to_vec();
    v.sort();
    v
}

fn reversed(events: &[&str]) -> Vec<String> {
    events.iter().rev().map(|s| s.to_string()).collect()
}

/// Counts, per task, how often it was scheduled and how often it was stepped.
#[derive(Default)]
struct StepCounter {
    scheduled: RefCell<HashMap<TaskId, u32>>,
    steps: RefCell<HashMap<TaskId, u32>>,
}

impl StepCounter {
    fn steps_of(&self, id: TaskId) -> u32 {
        self.steps.borrow().get(&id).copied().unwrap_or(0)
    }

    fn scheduled_of(&self, id: TaskId) -> u32 {
        self.scheduled.borrow().get(&id).copied().unwrap_or(0)
    }
}

impl Instrument for StepCounter {
    fn task_scheduled(&self, task: TaskId) {
        *self.scheduled.borrow_mut().entry(task).or_default() += 1;
    }

    fn before_task_step(&self, task: TaskId) {
        *self.steps.borrow_mut().entry(task).or_default() += 1;
    }
}

// ---------------------------------------------------------------------------
// Scheduler

/// S1: a batch of three tasks (A, B, C) is spawned in one step. While the
/// batch runs, A wakes a blocked task E, B yields (waking itself) and C
/// spawns D. None of E, B's second step or D may run before every task of
/// the batch has run.
#[test]
fn s1_tasks_woken_or_spawned_during_a_pass_run_only_after_the_whole_batch() {
    for seed in 0..16 {
        let log = Log::default();
        let l = log.clone();
        let out = Builder::new().seed(seed).run(open_nursery(move |n| async move {
            let slot: Rc<RefCell<Option<Waker>>> = Rc::default();
            {
                let (slot, l) = (slot.clone(), l.clone());
                n.start_soon(async move {
                    let mut parked = false;
                    poll_fn(|cx| {
                        if parked {
                            Poll::Ready(())
                        } else {
                            parked = true;
                            *slot.borrow_mut() = Some(cx.waker().clone());
                            Poll::Pending
                        }
                    })
                    .await;
                    l.push("E woken");
                })?;
            }
            // E has run and parked itself before the batch is spawned.
            wait_all_tasks_blocked().await?;
            assert!(slot.borrow().is_some());
            {
                let (slot, l) = (slot.clone(), l.clone());
                n.start_soon(async move {
                    l.push("A");
                    slot.borrow_mut().take().expect("E parked").wake();
                })?;
            }
            {
                let l = l.clone();
                n.start_soon(async move {
                    l.push("B");
                    checkpoint().await?;
                    l.push("B again");
                    Ok::<(), Cancelled>(())
                })?;
            }
            {
                let (l, n2) = (l.clone(), n.clone());
                n.start_soon(async move {
                    l.push("C");
                    let l2 = l.clone();
                    n2.start_soon(async move { l2.push("D") })?;
                    Ok::<(), NurseryClosed>(())
                })?;
            }
            Ok::<_, BoxError>(())
        }));
        assert_eq!(describe_multi(&out), "Ok(Some(()))");
        let got = log.get();
        assert_eq!(got.len(), 6, "seed {seed}: {got:?}");
        let batch = &got[..3];
        assert!(
            batch == strings(&["A", "B", "C"]) || batch == reversed(&["A", "B", "C"]),
            "seed {seed}: the batch ran as {batch:?}"
        );
        assert_eq!(sorted(&got[3..]), strings(&["B again", "D", "E woken"]), "seed {seed}: {got:?}");
    }
}

/// S1: deadlines are collected between passes. A task moves the mock clock
/// past a sleeper's deadline in the middle of its step; the sleeper is made
/// runnable by the next collection and runs in the very next pass, the same
/// pass as the jumping task's next step.
#[test]
fn s1_expired_deadlines_are_collected_between_passes() {
    let mut orders = HashSet::new();
    for seed in 0..16 {
        let log = Log::default();
        let clock = MockClock::new(); // no autojump: time moves only when we jump it
        let (l, c) = (log.clone(), clock.clone());
        let out = Builder::new().seed(seed).clock(clock).run(open_nursery(move |n| async move {
            {
                let l = l.clone();
                n.start_soon(async move {
                    let r = sleep(Duration::from_secs(1)).await;
                    l.push(format!("sleeper woke: {r:?} at t={}", secs()));
                    r
                })?;
            }
            n.start_soon(async move {
                wait_all_tasks_blocked().await?; // the sleeper waits on its timer
                c.jump(Duration::from_secs(1));
                l.push("jumped");
                checkpoint().await?;
                l.push("jumper's next step");
                Ok::<(), Cancelled>(())
            })?;
            Ok::<_, BoxError>(())
        }));
        assert_eq!(describe_multi(&out), "Ok(Some(()))");
        let got = log.get();
        assert_eq!(got.len(), 3, "seed {seed}: {got:?}");
        assert_eq!(got[0], "jumped");
        assert_eq!(sorted(&got[1..]), strings(&["jumper's next step", "sleeper woke: Ok(()) at t=1"]));
        orders.insert(got);
    }
    // Both orders of that next pass occur: the sleeper really shares it.
    assert_eq!(orders.len(), 2, "{orders:?}");
}

/// Tracks which tasks are runnable (scheduled, not yet stepped) and records
/// the timeout of every I/O wait with whether anything was runnable.
#[derive(Default)]
struct IoWaitProbe {
    runnable: RefCell<HashSet<TaskId>>,
    waits: RefCell<Vec<(bool, Option<Duration>)>>,
}

impl Instrument for IoWaitProbe {
    fn task_scheduled(&self, task: TaskId) {
        self.runnable.borrow_mut().insert(task);
    }
    fn before_task_step(&self, task: TaskId) {
        self.runnable.borrow_mut().remove(&task);
    }
    fn task_exited(&self, task: TaskId) {
        self.runnable.borrow_mut().remove(&task);
    }
    fn before_io_wait(&self, timeout: Option<Duration>) {
        let any_runnable = !self.runnable.borrow().is_empty();
        self.waits.borrow_mut().push((any_runnable, timeout));
    }
}

/// S1: between passes the scheduler waits for I/O with timeout 0 while
/// tasks are runnable, and otherwise only until the next deadline (never
/// forever while a timer is armed). Uses the system clock and a 3 ms sleep.
#[test]
fn s1_io_wait_is_non_blocking_while_tasks_run_and_lasts_until_the_next_deadline_when_idle() {
    // A clock whose time passes only when the runtime sleeps: asked how long
    // to sleep until a deadline, it records the request, jumps to the
    // deadline and answers "zero". So the test does not depend on real time.
    #[derive(Clone, Default)]
    struct SleepRecordingClock {
        now: Rc<std::cell::Cell<trioxide::Instant>>,
        requests: Rc<RefCell<Vec<trioxide::Instant>>>,
    }
    impl trioxide::Clock for SleepRecordingClock {
        fn current_time(&self) -> trioxide::Instant {
            self.now.get()
        }
        fn deadline_to_sleep_time(&self, deadline: trioxide::Instant) -> Option<Duration> {
            self.requests.borrow_mut().push(deadline);
            if deadline > self.now.get() {
                self.now.set(deadline);
            }
            Some(Duration::ZERO)
        }
    }
    let clock = SleepRecordingClock::default();
    let probe = Rc::new(IoWaitProbe::default());
    let steps = Rc::new(std::cell::Cell::new(0u32));
    let st = steps.clone();
    let out = Builder::new().seed(5).clock(clock.clone()).instrument(probe.clone()).run(open_nursery(|n| async move {
        n.start_soon(async move {
            for _ in 0..200 {
                checkpoint().await?;
                st.set(st.get() + 1);
            }
            Ok::<(), Cancelled>(())
        })?;
        n.start_soon(async move {
            sleep(Duration::from_millis(3)).await?;
            Ok::<_, Cancelled>(())
        })?;
        Ok::<_, BoxError>(())
    }));
    assert_eq!(describe_multi(&out), "Ok(Some(()))");
    assert_eq!(steps.get(), 200);
    // While tasks were runnable the runtime never asked to sleep; once only
    // the sleeper was left, it asked exactly once, for the sleeper's deadline.
    assert_eq!(*clock.requests.borrow(), [trioxide::Instant::ZERO + Duration::from_millis(3)]);
    let waits = probe.waits.borrow();
    for &(any_runnable, timeout) in waits.iter() {
        if any_runnable {
            assert_eq!(timeout, Some(Duration::ZERO), "blocked with runnable tasks: {waits:?}");
        }
    }
}

/// Five tasks, each logging `name:i` then yielding, `rounds` times.
fn five_task_trace(builder: Builder, rounds: usize) -> (Vec<String>, u64) {
    let log = Log::default();
    let l = log.clone();
    let (out, report) = builder.run_with_report(open_nursery(move |n| async move {
        for name in ["t0", "t1", "t2", "t3", "t4"] {
            let l = l.clone();
            n.start_soon(async move {
                for i in 0..rounds {
                    l.push(format!("{name}:{i}"));
                    checkpoint().await?;
                }
                Ok::<(), Cancelled>(())
            })?;
        }
        Ok::<_, BoxError>(())
    }));
    assert_eq!(describe_multi(&out), "Ok(Some(()))");
    (log.get(), report.seed)
}

/// S2: the same seed gives the same interleaving; different seeds give
/// different ones.
#[test]
fn s2_same_seed_gives_identical_trace_and_different_seeds_differ() {
    let mut distinct = HashSet::new();
    for seed in 0..10 {
        let (first, s1) = five_task_trace(Builder::new().seed(seed), 4);
        let (second, s2) = five_task_trace(Builder::new().seed(seed), 4);
        assert_eq!((s1, s2), (seed, seed));
        assert_eq!(first.len(), 20);
        assert_eq!(first, second, "seed {seed} gave two different traces");
        distinct.insert(first);
    }
    assert!(distinct.len() >= 2, "10 seeds gave {} distinct trace(s)", distinct.len());
}

/// S2: a batch of five tasks spawned at once runs forwards or reversed,
/// never in another permutation, and both directions occur across seeds.
/// Each later pass runs the previous pass's order again or its reverse (the
/// tasks re-queue themselves in the order they ran).
#[test]
fn s2_each_batch_runs_in_order_or_reversed_never_another_permutation() {
    let forward = ["t0:0", "t1:0", "t2:0", "t3:0", "t4:0"];
    let mut first_orders = HashSet::new();
    for seed in 0..20 {
        let (trace, _) = five_task_trace(Builder::new().seed(seed), 4);
        assert_eq!(trace.len(), 20);
        let first = trace[..5].to_vec();
        assert!(first == strings(&forward) || first == reversed(&forward), "seed {seed}: first pass ran as {first:?}");
        first_orders.insert(first);
        // Names only, pass by pass.
        let passes: Vec<Vec<String>> = trace
            .chunks(5)
            .map(|pass| pass.iter().map(|e| e.split(':').next().unwrap().to_string()).collect())
            .collect();
        for (k, pair) in passes.windows(2).enumerate() {
            let prev_reversed: Vec<String> = pair[0].iter().rev().cloned().collect();
            assert!(
                pair[1] == pair[0] || pair[1] == prev_reversed,
                "seed {seed}, pass {}: {:?} after {:?}",
                k + 1,
                pair[1],
                pair[0]
            );
        }
        for (i, pass) in trace.chunks(5).enumerate() {
            assert!(pass.iter().all(|e| e.ends_with(&format!(":{i}"))), "seed {seed}: pass {i} is {pass:?}");
        }
    }
    assert_eq!(first_orders.len(), 2, "both directions occur across 20 seeds: {first_orders:?}");
}

/// S2: unseeded runs get fresh seeds and so differ (unless TRIOXIDE_SEED
/// pins every unseeded run to one seed, in which case they must all agree).
#[test]
fn s2_unseeded_runs_differ_unless_the_seed_is_pinned_by_the_environment() {
    let runs: Vec<(Vec<String>, u64)> = (0..10).map(|_| five_task_trace(Builder::new(), 4)).collect();
    let traces: HashSet<&Vec<String>> = runs.iter().map(|(t, _)| t).collect();
    let seeds: HashSet<u64> = runs.iter().map(|(_, s)| *s).collect();
    match std::env::var(SEED_ENV).ok().and_then(|s| s.trim().parse::<u64>().ok()) {
        Some(pinned) => {
            assert_eq!(seeds, HashSet::from([pinned]));
            assert_eq!(traces.len(), 1);
        }
        None => {
            assert_eq!(seeds.len(), 10, "unseeded runs reused a seed: {seeds:?}");
            assert!(traces.len() >= 2, "10 unseeded runs gave one trace");
        }
    }
}

/// S3: two tasks yielding in a loop run once per pass each: the log is a
/// sequence of pairs, the i-th pair holding both tasks' i-th step.
#[test]
fn s3_two_yielding_tasks_interleave_round_robin() {
    let mut pair_orders = HashSet::new();
    for seed in 0..8 {
        let log = Log::default();
        let l = log.clone();
        let out = Builder::new().seed(seed).run(open_nursery(move |n| async move {
            for name in ["a", "b"] {
                let l = l.clone();
                n.start_soon(async move {
                    for i in 0..6 {
                        l.push(format!("{name}{i}"));
                        checkpoint().await?;
                    }
                    Ok::<(), Cancelled>(())
                })?;
            }
            Ok::<_, BoxError>(())
        }));
        assert_eq!(describe_multi(&out), "Ok(Some(()))");
        let got = log.get();
        assert_eq!(got.len(), 12, "seed {seed}: {got:?}");
        for (i, pair) in got.chunks(2).enumerate() {
            assert_eq!(sorted(pair), [format!("a{i}"), format!("b{i}")], "seed {seed}: {got:?}");
            pair_orders.insert(pair[0].chars().next());
        }
    }
    // Each task gets to go first in some pass.
    assert_eq!(pair_orders.len(), 2);
}

/// S4: a task woken four times (twice by reference, twice by value) while it
/// is blocked runs once; it is scheduled once more, not four times.
#[test]
fn s4_task_woken_twice_before_it_runs_is_scheduled_once() {
    let counter = Rc::new(StepCounter::default());
    let log = Log::default();
    let polls = Rc::new(Cell::new(0u32));
    let target: Rc<Cell<Option<TaskId>>> = Rc::default();
    let (l, p, t) = (log.clone(), polls.clone(), target.clone());
    let out = Builder::new().seed(4).instrument(counter.clone()).run(open_nursery(move |n| async move {
        let slot: Rc<RefCell<Option<Waker>>> = Rc::default();
        let released = Rc::new(Cell::new(false));
        {
            let (slot, released, l) = (slot.clone(), released.clone(), l.clone());
            n.start_soon(async move {
                t.set(Some(current_task().id));
                poll_fn(|cx| {
                    p.set(p.get() + 1);
                    l.push(format!("poll {} (released: {})", p.get(), released.get()));
                    if released.get() {
                        Poll::Ready(())
                    } else {
                        *slot.borrow_mut() = Some(cx.waker().clone());
                        Poll::Pending
                    }
                })
                .await;
            })?;
        }
        n.start_soon(async move {
            wait_all_tasks_blocked().await?;
            let w = slot.borrow_mut().take().expect("the target parked");
            w.wake_by_ref();
            w.wake_by_ref();
            let second_handle = w.clone();
            second_handle.wake();
            l.push("woken 4 times");
            w.wake();
            // The target runs (once) and parks again.
            wait_all_tasks_blocked().await?;
            released.set(true);
            l.push("released");
            slot.borrow_mut().take().expect("the target parked again").wake();
            Ok::<(), Cancelled>(())
        })?;
        Ok::<_, BoxError>(())
    }));
    assert_eq!(describe_multi(&out), "Ok(Some(()))");
    assert_eq!(
        log.get(),
        strings(&[
            "poll 1 (released: false)",
            "woken 4 times",
            "poll 2 (released: false)",
            "released",
            "poll 3 (released: true)"
        ])
    );
    assert_eq!(polls.get(), 3);
    let id = target.get().expect("target ran");
    assert_eq!(counter.steps_of(id), 3, "steps of the target");
    assert_eq!(counter.scheduled_of(id), 3, "spawn, the four wake-ups, the release");
}

/// S4: a task that wakes itself twice during its own step (and then blocks
/// on nothing else) runs exactly once more, not twice.
#[test]
fn s4_task_waking_itself_twice_in_one_step_runs_once_more() {
    let counter = Rc::new(StepCounter::default());
    let log = Log::default();
    let target: Rc<Cell<Option<TaskId>>> = Rc::default();
    let (l, t) = (log.clone(), target.clone());
    let out = Builder::new().seed(9).instrument(counter.clone()).run(open_nursery(move |n| async move {
        let slot: Rc<RefCell<Option<Waker>>> = Rc::default();
        {
            let (slot, l) = (slot.clone(), l.clone());
            n.start_soon(async move {
                t.set(Some(current_task().id));
                let mut polls = 0;
                poll_fn(|cx| {
                    polls += 1;
                    l.push(format!("poll {polls}"));
                    match polls {
                        1 => {
                            cx.waker().wake_by_ref();
                            cx.waker().wake_by_ref();
                            Poll::Pending
                        }
                        2 => {
                            *slot.borrow_mut() = Some(cx.waker().clone());
                            Poll::Pending
                        }
                        _ => Poll::Ready(()),
                    }
                })
                .await;
            })?;
        }
        n.start_soon(async move {
            wait_all_tasks_blocked().await?;
            l.push("all blocked");
            slot.borrow_mut().take().expect("parked").wake();
            Ok::<(), Cancelled>(())
        })?;
        Ok::<_, BoxError>(())
    }));
    assert_eq!(describe_multi(&out), "Ok(Some(()))");
    assert_eq!(log.get(), strings(&["poll 1", "poll 2", "all blocked", "poll 3"]));
    let id = target.get().unwrap();
    assert_eq!(counter.steps_of(id), 3);
    assert_eq!(counter.scheduled_of(id), 3, "spawn, the double self-wake, the release");
}

// ---------------------------------------------------------------------------
// Nurseries

/// N1: a failing child cancels its sibling and the body (both blocked in a
/// one-hour sleep, both woken at t=0), the nursery waits for the sibling's
/// cleanup, and only then reports the failure, alone (the Cancelled of the
/// sibling and the body are caught by the nursery's own scope).
#[test]
fn n1_failing_child_cancels_siblings_and_body_then_nursery_reports_failure() {
    let log = Log::default();
    let l = log.clone();
    let (out, scope_state) = Builder::new().seed(1).clock(autojump_clock()).run(async move {
        let scope: Rc<RefCell<Option<CancelScope>>> = Rc::default();
        let (l2, sc) = (l.clone(), scope.clone());
        let out = open_nursery(move |n| async move {
            *sc.borrow_mut() = Some(n.cancel_scope());
            {
                let l = l2.clone();
                n.start_soon(async move {
                    let r = sleep(Duration::from_secs(3600)).await;
                    l.push(format!("sibling: {r:?} at t={}", secs()));
                    cancel_shielded_checkpoint().await; // cleanup takes a step
                    l.push("sibling cleaned up");
                    r
                })?;
            }
            {
                let l = l2.clone();
                n.start_soon(async move {
                    checkpoint().await?;
                    l.push("crasher fails");
                    Err::<(), BoxError>(fail("crash"))
                })?;
            }
            let r = sleep(Duration::from_secs(3600)).await;
            l2.push(format!("body: {r:?} at t={}", secs()));
            r?;
            Ok::<_, BoxError>("unreachable")
        })
        .await;
        l.push(format!("nursery returned at t={}", secs()));
        let s = scope.borrow_mut().take().unwrap();
        (out, (s.cancel_called(), s.cancelled_caught()))
    });
    assert_eq!(describe_multi(&out), "Err(MultiError[Fail(\"crash\")])");
    let errors = out.unwrap_err().into_errors();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].downcast_ref::<Fail>(), Some(&Fail("crash")));
    assert_eq!(scope_state, (true, true));
    let got = log.get();
    assert_eq!(got.len(), 5, "{got:?}");
    assert_eq!(got[0], "crasher fails");
    assert_eq!(
        sorted(&got[1..3]),
        strings(&["body: Err(Cancelled) at t=0", "sibling: Err(Cancelled) at t=0"]),
        "{got:?}"
    );
    assert_eq!(got[3..], strings(&["sibling cleaned up", "nursery returned at t=0"]));
}

/// N1, panic: a panicking child cancels its sibling and the body; the panic
/// comes out of `run` only after the sibling has finished its cleanup, and
/// the code after the nursery never runs.
#[test]
fn n1_panicking_child_cancels_siblings_and_panic_comes_out_after_they_finish() {
    let log = Log::default();
    let l = log.clone();
    let result = catch_unwind(AssertUnwindSafe(|| {
        Builder::new().seed(2).clock(autojump_clock()).run(async move {
            let l2 = l.clone();
            let out = open_nursery(move |n| async move {
                {
                    let l = l2.clone();
                    n.start_soon(async move {
                        let r = sleep(Duration::from_secs(3600)).await;
                        l.push(format!("sibling: {r:?} at t={}", secs()));
                        cancel_shielded_checkpoint().await;
                        l.push("sibling cleaned up");
                        r
                    })?;
                }
                {
                    let l = l2.clone();
                    n.start_soon(async move {
                        if checkpoint().await.is_ok() {
                            l.push("child panics");
                            panic!("boom in child");
                        }
                    })?;
                }
                let r = sleep(Duration::from_secs(3600)).await;
                l2.push(format!("body: {r:?} at t={}", secs()));
                r?;
                Ok::<_, BoxError>(())
            })
            .await;
            l.push("after the nursery");
            out
        })
    }));
    let payload = result.expect_err("the child's panic comes out of run");
    assert_eq!(panic_message(&*payload), "boom in child");
    let got = log.get();
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got[0], "child panics");
    assert_eq!(
        sorted(&got[1..3]),
        strings(&["body: Err(Cancelled) at t=0", "sibling: Err(Cancelled) at t=0"]),
        "{got:?}"
    );
    assert_eq!(got[3], "sibling cleaned up");
}

/// N2: a child's failure wakes the parent while its body is blocked: the
/// body's one-hour sleep ends with Cancelled at t=0.
#[test]
fn n2_child_failure_wakes_parent_body_blocked_in_sleep() {
    let log = Log::default();
    let l = log.clone();
    let out = Builder::new().seed(3).clock(autojump_clock()).run(async move {
        let l2 = l.clone();
        let out = open_nursery(move |n| async move {
            {
                let l = l2.clone();
                n.start_soon(async move {
                    checkpoint().await?;
                    l.push(format!("child fails at t={}", secs()));
                    Err::<(), BoxError>(fail("child"))
                })?;
            }
            l2.push("body blocks");
            let r = sleep(Duration::from_secs(3600)).await;
            l2.push(format!("body woken: {r:?} at t={}", secs()));
            r?;
            Ok::<_, BoxError>(())
        })
        .await;
        l.push(format!("nursery returned at t={}", secs()));
        out
    });
    assert_eq!(describe_multi(&out), "Err(MultiError[Fail(\"child\")])");
    assert_eq!(
        log.get(),
        strings(&["body blocks", "child fails at t=0", "body woken: Err(Cancelled) at t=0", "nursery returned at t=0"])
    );
}

/// N3: two children and the body fail; all three errors are reported, in
/// the order they happened (the body first, then the children in the order
/// they ran). The children start and fail although the body's failure
/// cancelled the nursery first.
#[test]
fn n3_failures_of_two_children_and_the_body_are_all_reported() {
    let mut child_orders = HashSet::new();
    for seed in 0..8 {
        let log = Log::default();
        let l = log.clone();
        let out = Builder::new().seed(seed).run(open_nursery(move |n| async move {
            for tag in ["a", "b"] {
                let l = l.clone();
                n.start_soon(async move {
                    l.push(tag);
                    Err::<(), BoxError>(fail(tag))
                })?;
            }
            l.push("body");
            Err::<(), BoxError>(fail("body"))
        }));
        let got = log.get();
        assert_eq!(got[0], "body");
        assert_eq!(sorted(&got[1..]), strings(&["a", "b"]));
        let expected = format!("Err(MultiError[Fail(\"body\"), Fail(\"{}\"), Fail(\"{}\")])", got[1], got[2]);
        assert_eq!(describe_multi(&out), expected, "seed {seed}");
        let errors = out.unwrap_err().into_errors();
        assert_eq!(errors.len(), 3);
        assert!(errors.iter().all(|e| e.is::<Fail>()));
        child_orders.insert(got);
    }
    assert_eq!(child_orders.len(), 2, "both children got to fail first in some seed");
}

/// N3 (test_two_child_crashes): two children crash while the body waits;
/// both errors come out, and the body's own Cancelled is not among them.
#[test]
fn n3_two_crashing_children_are_both_reported_while_body_was_waiting() {
    let log = Log::default();
    let l = log.clone();
    let out = Builder::new().seed(6).clock(autojump_clock()).run(open_nursery(move |n| async move {
        for tag in ["a", "b"] {
            let l = l.clone();
            n.start_soon(async move {
                l.push(tag);
                Err::<(), BoxError>(fail(tag))
            })?;
        }
        let r = sleep_forever().await;
        l.push(format!("body: {r:?}"));
        r?;
        Ok::<_, BoxError>(())
    }));
    let got = log.get();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(sorted(&got[..2]), strings(&["a", "b"]));
    assert_eq!(got[2], "body: Err(Cancelled)");
    assert_eq!(describe_multi(&out), format!("Err(MultiError[Fail(\"{}\"), Fail(\"{}\")])", got[0], got[1]));
}

/// N3, panic: one child panics while another child and the body fail with
/// errors after being cancelled; the panic comes out of `run` only after
/// both other failures have happened.
#[test]
fn n3_child_panic_comes_out_after_the_other_child_and_body_have_failed() {
    let log = Log::default();
    let l = log.clone();
    let result = catch_unwind(AssertUnwindSafe(|| {
        Builder::new().seed(7).clock(autojump_clock()).run(open_nursery(move |n| async move {
            {
                let l = l.clone();
                n.start_soon(async move {
                    let r = sleep(Duration::from_secs(3600)).await;
                    cancel_shielded_checkpoint().await;
                    l.push(format!("other child fails after {r:?}"));
                    Err::<(), BoxError>(fail("other child"))
                })?;
            }
            {
                let l = l.clone();
                n.start_soon(async move {
                    if checkpoint().await.is_ok() {
                        l.push("child panics");
                        panic!("child exploded");
                    }
                })?;
            }
            let r = sleep(Duration::from_secs(3600)).await;
            cancel_shielded_checkpoint().await;
            l.push(format!("body fails after {r:?}"));
            Err::<(), BoxError>(fail("body"))
        }))
    }));
    let payload = result.expect_err("the panic comes out of run");
    assert_eq!(panic_message(&*payload), "child exploded");
    let got = log.get();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0], "child panics");
    assert_eq!(
        sorted(&got[1..]),
        strings(&["body fails after Err(Cancelled)", "other child fails after Err(Cancelled)"])
    );
}

/// N3, two panics: both panicking children run; the first panic (in log
/// order) is the one that comes out, after the second child has panicked too.
#[test]
fn n3_of_two_panicking_children_the_first_panic_comes_out_after_both_ran() {
    let mut firsts = HashSet::new();
    for seed in 0..8 {
        let log = Log::default();
        let l = log.clone();
        let result = catch_unwind(AssertUnwindSafe(|| {
            Builder::new().seed(seed).run(open_nursery(move |n| async move {
                for tag in ["p", "q"] {
                    let l = l.clone();
                    n.start_soon(async move {
                        l.push(tag);
                        if !tag.is_empty() {
                            panic!("panic {tag}");
                        }
                    })?;
                }
                Ok::<_, BoxError>(())
            }))
        }));
        let payload = result.expect_err("a panic comes out of run");
        let got = log.get();
        assert_eq!(sorted(&got), strings(&["p", "q"]), "seed {seed}: both children ran");
        assert_eq!(panic_message(&*payload), format!("panic {}", got[0]), "seed {seed}");
        firsts.insert(got[0].clone());
    }
    assert_eq!(firsts.len(), 2);
}

/// N4: returning from the body does not cancel the children: the child's
/// ten-second sleep completes normally and the nursery returns at t=10 with
/// the body's value.
#[test]
fn n4_body_returning_does_not_cancel_children_nursery_waits_for_them() {
    let log = Log::default();
    let l = log.clone();
    let (out, cancel_called) = Builder::new().seed(4).clock(autojump_clock()).run(async move {
        let l2 = l.clone();
        let scope: Rc<RefCell<Option<CancelScope>>> = Rc::default();
        let sc = scope.clone();
        let out = open_nursery(move |n| async move {
            *sc.borrow_mut() = Some(n.cancel_scope());
            {
                let l = l2.clone();
                n.start_soon(async move {
                    let r = sleep(Duration::from_secs(10)).await;
                    l.push(format!("child slept: {r:?} until t={}", secs()));
                    r
                })?;
            }
            l2.push(format!("body returns at t={}", secs()));
            Ok::<_, BoxError>("body value")
        })
        .await;
        l.push(format!("nursery returned at t={}", secs()));
        let cancel_called = scope.borrow().as_ref().unwrap().cancel_called();
        (out, cancel_called)
    });
    assert_eq!(describe_multi(&out), "Ok(Some(\"body value\"))");
    assert!(!cancel_called);
    assert_eq!(
        log.get(),
        strings(&["body returns at t=0", "child slept: Ok(()) until t=10", "nursery returned at t=10"])
    );
}

/// N4 (Trio gh-1457, `Nursery._nested_child_finished`): while the body has
/// returned and the nursery only waits for its children, a cancellation from
/// an outer scope is passed on to the children but is not an error of the
/// nursery itself. Here the only child handles its Cancelled and ends
/// cleanly, so the nursery has nothing to report: it returns the body's
/// value, the code after it runs, and the outer scope catches nothing.
#[test]
fn n4_outer_cancel_while_nursery_waits_is_not_an_error_of_the_nursery() {
    let log = Log::default();
    let l = log.clone();
    let out = Builder::new().seed(8).clock(autojump_clock()).run(open_nursery(move |top| async move {
        let scope = CancelScope::new();
        {
            let (sc, l) = (scope.clone(), l.clone());
            top.start_soon(async move {
                wait_all_tasks_blocked().await?;
                l.push("cancel the outer scope");
                sc.cancel();
                Ok::<(), Cancelled>(())
            })?;
        }
        let r = scope
            .run(async {
                let l2 = l.clone();
                let r = open_nursery(move |n| async move {
                    n.start_soon(async move {
                        let r = sleep(Duration::from_secs(3600)).await;
                        l2.push(format!("child handles {r:?} at t={} and ends cleanly", secs()));
                    })?;
                    Ok::<_, BoxError>("body")
                })
                .await;
                l.push(format!("nursery returned {}", describe_multi(&r)));
                r
            })
            .await;
        Ok::<_, BoxError>((describe_multi(&r), scope.cancelled_caught()))
    }));
    assert_eq!(
        log.get(),
        strings(&[
            "cancel the outer scope",
            "child handles Err(Cancelled) at t=0 and ends cleanly",
            "nursery returned Ok(Some(\"body\"))"
        ])
    );
    let (scoped, caught) = out.unwrap().unwrap();
    assert_eq!(scoped, "Ok(Some(Some(\"body\")))");
    assert!(!caught);
}

/// N5: after the body has returned, a child spawns a sibling, which spawns
/// another; the nursery is still open for them. Once it has closed, spawning
/// through a kept handle fails with NurseryClosed and the task never runs.
#[test]
fn n5_children_spawn_siblings_after_body_returned_then_closed_nursery_rejects_spawns() {
    let log = Log::default();
    let l = log.clone();
    let out = Builder::new().seed(5).run(async move {
        let kept: Rc<RefCell<Option<Nursery>>> = Rc::default();
        let (k, l2) = (kept.clone(), l.clone());
        let out = open_nursery(move |n| async move {
            *k.borrow_mut() = Some(n.clone());
            let (n1, l1) = (n.clone(), l2.clone());
            n.start_soon(async move {
                checkpoint().await?;
                l1.push(format!("first child spawns (closed: {})", n1.is_closed()));
                let (n2, l3) = (n1.clone(), l1.clone());
                n1.start_soon(async move {
                    l3.push("second child spawns");
                    let l4 = l3.clone();
                    n2.start_soon(async move { l4.push("third child runs") })?;
                    Ok::<(), NurseryClosed>(())
                })?;
                Ok::<(), BoxError>(())
            })?;
            l2.push("body returns");
            Ok::<_, BoxError>(())
        })
        .await;
        l.push("nursery closed");
        let n = kept.borrow_mut().take().unwrap();
        let ran = Rc::new(Cell::new(false));
        let r1 = {
            let ran = ran.clone();
            n.start_soon(async move { ran.set(true) })
        };
        let r2 = {
            let ran = ran.clone();
            n.start_soon_named("late", async move { ran.set(true) })
        };
        checkpoint().await.unwrap();
        (describe_multi(&out), n.is_closed(), r1, r2, ran.get())
    });
    assert_eq!(out, ("Ok(Some(()))".to_string(), true, Err(NurseryClosed), Err(NurseryClosed), false));
    assert_eq!(
        log.get(),
        strings(&[
            "body returns",
            "first child spawns (closed: false)",
            "second child spawns",
            "third child runs",
            "nursery closed"
        ])
    );
}

/// N6: cancelling a nursery's scope reaches a grandchild (in a nursery
/// opened by a child) at once: its one-hour sleep ends with Cancelled at
/// t=0; the inner nursery reports that Cancelled (it is not its own scope's)
/// and the outer nursery's scope catches it.
#[test]
fn n6_cancelling_nursery_scope_reaches_grandchildren_at_once() {
    let log = Log::default();
    let l = log.clone();
    let (out, caught) = Builder::new().seed(6).clock(autojump_clock()).run(async move {
        let scope: Rc<RefCell<Option<CancelScope>>> = Rc::default();
        let (sc, l2) = (scope.clone(), l.clone());
        let out = open_nursery(move |n| async move {
            *sc.borrow_mut() = Some(n.cancel_scope());
            let l1 = l2.clone();
            n.start_soon(async move {
                let l3 = l1.clone();
                let inner = open_nursery(move |inner| async move {
                    inner.start_soon(async move {
                        let r = sleep(Duration::from_secs(3600)).await;
                        l3.push(format!("grandchild: {r:?} at t={}", secs()));
                        r
                    })?;
                    Ok::<_, BoxError>(())
                })
                .await;
                // Only cancellations, among them the grandchild's (the exact
                // count is pinned by the N4 gh-1457 test below).
                let only_cancelled =
                    inner.as_ref().err().map(|m| m.is_cancelled() && m.errors().iter().all(|e| e.is::<Cancelled>()));
                l1.push(format!("inner nursery: Err(only Cancelled): {only_cancelled:?}"));
                inner.map(|_| ())
            })?;
            wait_all_tasks_blocked().await?;
            l2.push(format!("cancel at t={}", secs()));
            n.cancel_scope().cancel();
            Ok::<_, BoxError>("body")
        })
        .await;
        l.push(format!("outer nursery returned at t={}", secs()));
        let caught = scope.borrow().as_ref().unwrap().cancelled_caught();
        (out, caught)
    });
    assert_eq!(describe_multi(&out), "Ok(Some(\"body\"))");
    assert!(caught, "the outer nursery's scope caught the Cancelled");
    assert_eq!(
        log.get(),
        strings(&[
            "cancel at t=0",
            "grandchild: Err(Cancelled) at t=0",
            "inner nursery: Err(only Cancelled): Some(true)",
            "outer nursery returned at t=0"
        ])
    );
}

/// N7: a task spawned into a nursery whose scope is already cancelled still
/// starts (runs up to its first checkpoint), and that checkpoint reports
/// Cancelled; a task whose first await is `sleep_forever` ends too.
#[test]
fn n7_task_spawned_into_cancelled_nursery_starts_and_first_checkpoint_is_cancelled() {
    let log = Log::default();
    let l = log.clone();
    let (out, caught) = Builder::new().seed(7).run(async move {
        let scope: Rc<RefCell<Option<CancelScope>>> = Rc::default();
        let (sc, l2) = (scope.clone(), l.clone());
        let out = open_nursery(move |n| async move {
            *sc.borrow_mut() = Some(n.cancel_scope());
            n.cancel_scope().cancel();
            {
                let l = l2.clone();
                n.start_soon(async move {
                    l.push("checkpointer started");
                    let r = checkpoint().await;
                    l.push(format!("checkpointer's first checkpoint: {r:?}"));
                    r
                })?;
            }
            {
                let l = l2.clone();
                n.start_soon(async move {
                    l.push("blocker started");
                    sleep_forever().await?;
                    Ok::<(), Cancelled>(())
                })?;
            }
            Ok::<_, BoxError>("body")
        })
        .await;
        let caught = scope.borrow().as_ref().unwrap().cancelled_caught();
        (out, caught)
    });
    assert_eq!(describe_multi(&out), "Ok(Some(\"body\"))");
    assert!(caught);
    let got = log.get();
    assert_eq!(got.len(), 3, "{got:?}");
    // The two children form one batch (either order); the checkpointer's
    // checkpoint fails at once, in its first step.
    let checkpointer = strings(&["checkpointer started", "checkpointer's first checkpoint: Err(Cancelled)"]);
    if got[0] == "blocker started" {
        assert_eq!(got[1..], checkpointer);
    } else {
        assert_eq!(got[..2], checkpointer);
        assert_eq!(got[2], "blocker started");
    }
}

/// N8: leaving an empty nursery inside a cancelled scope is a schedule point
/// but not a cancel point. The main task runs between X and Y in one batch
/// (X, main, Y): whichever of X and Y runs after main does so while main is
/// leaving the empty nursery. The nursery returns its body's value, the
/// scope's body completes, and `cancelled_caught` stays false.
#[test]
fn n8_empty_nursery_in_cancelled_scope_is_a_schedule_point_not_a_cancel_point() {
    let mut logs = HashSet::new();
    for seed in 0..8 {
        let log = Log::default();
        let l = log.clone();
        let (r, called, caught) = Builder::new()
            .seed(seed)
            .run(open_nursery(move |n| async move {
                // Queue X, this task, Y, in that order, for the next pass.
                let mut x = Some({
                    let l = l.clone();
                    async move { l.push("X") }
                });
                let mut y = Some({
                    let l = l.clone();
                    async move { l.push("Y") }
                });
                poll_fn(|cx| match (x.take(), y.take()) {
                    (Some(x), Some(y)) => {
                        n.start_soon(x).unwrap();
                        cx.waker().wake_by_ref();
                        n.start_soon(y).unwrap();
                        Poll::Pending
                    }
                    _ => Poll::Ready(()),
                })
                .await;
                let scope = CancelScope::new();
                scope.cancel();
                let r = scope
                    .run(async {
                        l.push("before");
                        let v = open_nursery(|_empty| async { Ok::<_, BoxError>(1) }).await?;
                        l.push("after");
                        Ok::<_, MultiError>(v)
                    })
                    .await;
                Ok::<_, BoxError>((describe_multi(&r), scope.cancel_called(), scope.cancelled_caught()))
            }))
            .unwrap()
            .unwrap();
        assert_eq!(r, "Ok(Some(Some(1)))", "seed {seed}");
        assert!(called);
        assert!(!caught, "seed {seed}: an empty nursery is not a cancel point");
        let got = log.get();
        assert!(
            got == strings(&["X", "before", "Y", "after"]) || got == strings(&["Y", "before", "X", "after"]),
            "seed {seed}: {got:?}"
        );
        logs.insert(got);
    }
    assert_eq!(logs.len(), 2);
}

/// N9: `start` returns the value passed to `started`; from then on the child
/// belongs to the target nursery: its parent changes from the caller to the
/// target's owner, cancelling the caller's own nursery does not touch it,
/// and the target nursery waits for it (until t=10).
#[test]
fn n9_start_returns_started_value_and_child_then_belongs_to_target_nursery() {
    let log = Log::default();
    let l = log.clone();
    let parents: Rc<Cell<(Option<TaskId>, Option<TaskId>)>> = Rc::new(Cell::new((None, None)));
    let ids: Rc<Cell<(Option<TaskId>, Option<TaskId>)>> = Rc::new(Cell::new((None, None)));
    let (p, i) = (parents.clone(), ids.clone());
    let out = Builder::new().seed(9).clock(autojump_clock()).run(async move {
        let l2 = l.clone();
        let out = open_nursery(move |target| async move {
            let main_id = current_task().id;
            let t2 = target.clone();
            target.start_soon_named("caller", async move {
                let caller_id = current_task().id;
                i.set((Some(main_id), Some(caller_id)));
                let l3 = l2.clone();
                let r = open_nursery(move |own| async move {
                    let l4 = l3.clone();
                    let v = t2
                        .start(move |status: TaskStatus<u32>| async move {
                            let before = current_task().parent;
                            l4.push("child ready");
                            status.started(42);
                            p.set((before, current_task().parent));
                            let r = sleep(Duration::from_secs(10)).await;
                            l4.push(format!("child slept: {r:?} until t={}", secs()));
                            r
                        })
                        .await?;
                    l3.push(format!("start returned {v}"));
                    own.cancel_scope().cancel();
                    Ok::<_, BoxError>(v)
                })
                .await;
                l2.push(format!("caller's nursery returned {} at t={}", describe_multi(&r), secs()));
                r.map(|_| ())
            })?;
            Ok::<_, BoxError>(())
        })
        .await;
        l.push(format!("target nursery returned at t={}", secs()));
        out
    });
    assert_eq!(describe_multi(&out), "Ok(Some(()))");
    assert_eq!(
        log.get(),
        strings(&[
            "child ready",
            "start returned 42",
            "caller's nursery returned Ok(Some(42)) at t=0",
            "child slept: Ok(()) until t=10",
            "target nursery returned at t=10"
        ])
    );
    let (main_id, caller_id) = ids.get();
    assert_eq!(parents.get(), (caller_id, main_id), "parent before and after started()");
}

/// N9: while the started child runs, `task_tree` lists it under the target
/// nursery's owner.
#[test]
fn n9_started_child_is_listed_under_target_nursery_owner_in_task_tree() {
    let out = Builder::new().seed(10).clock(autojump_clock()).run(open_nursery(|target| async move {
        let main_id = current_task().id;
        let t2 = target.clone();
        target.start_soon_named("caller", async move {
            t2.start(|status: TaskStatus<()>| async move {
                status.started(());
                sleep_forever().await?;
                Ok::<(), Cancelled>(())
            })
            .await
        })?;
        wait_all_tasks_blocked().await?;
        // The caller has finished: only the main task and the started child remain.
        let tree = task_tree();
        target.cancel_scope().cancel();
        let others: Vec<Option<TaskId>> = tree.iter().filter(|t| t.id != main_id).map(|t| t.parent).collect();
        let names: Vec<bool> = tree.iter().map(|t| t.name == "caller").collect();
        Ok::<_, BoxError>((others, names, main_id))
    }));
    let (others, names, main_id) = out.unwrap().unwrap();
    assert_eq!(others, vec![Some(main_id)]);
    assert!(names.iter().all(|is_caller| !is_caller), "the caller has finished");
}

/// N10: a failure before `started()` comes out of `start` itself, as that
/// error, not wrapped in a MultiError; the target nursery is unaffected.
#[test]
fn n10_failure_before_started_comes_out_of_start_unwrapped() {
    let out = Builder::new().seed(10).run(open_nursery(|n| async move {
        let r = n
            .start(|_status: TaskStatus<u32>| async move {
                checkpoint().await?;
                Err::<(), BoxError>(fail("before started"))
            })
            .await;
        let unwrapped = r.as_ref().err().map(|e| e.downcast_ref::<Fail>() == Some(&Fail("before started")));
        Ok::<_, BoxError>((describe(&r), unwrapped))
    }));
    let (described, unwrapped) = out.unwrap().unwrap();
    assert_eq!(described, "Err(Fail(\"before started\"))");
    assert_eq!(unwrapped, Some(true));
}

/// N10, panic: a panic before `started()` resumes in the caller of `start`
/// (caught here around the `start` future); the nursery goes on normally.
#[test]
fn n10_panic_before_started_resumes_in_the_caller_of_start() {
    let out = Builder::new().seed(11).run(open_nursery(|n| async move {
        let r = catch_panic(n.start(|_status: TaskStatus<u32>| async move {
            if checkpoint().await.is_ok() {
                panic!("panic before started");
            }
        }))
        .await;
        let msg = match r {
            Err(payload) => format!("panicked: {}", panic_message(&*payload)),
            Ok(r) => format!("returned {}", describe(&r)),
        };
        Ok::<_, BoxError>(msg)
    }));
    assert_eq!(describe_multi(&out), "Ok(Some(\"panicked: panic before started\"))");
}

/// N11: a child that finishes (after a checkpoint) without calling
/// `started()` makes `start` fail with `StartError::NotStarted`; the target
/// nursery is unaffected. (Calling `started()` twice does not compile, since
/// `started` consumes the `TaskStatus`: see the `compile_fail` doctest on
/// `TaskStatus` in src/start.rs.)
#[test]
fn n11_child_finishing_without_started_makes_start_fail_with_not_started() {
    let out = Builder::new().seed(12).run(open_nursery(|n| async move {
        let r = n
            .start(|_status: TaskStatus<u32>| async move {
                checkpoint().await?;
                Ok::<(), Cancelled>(())
            })
            .await;
        let exact = r.as_ref().err().and_then(|e| e.downcast_ref::<StartError>()).copied();
        Ok::<_, BoxError>((describe(&r), exact))
    }));
    let (described, exact) = out.unwrap().unwrap();
    assert_eq!(described, "Err(StartError::NotStarted)");
    assert_eq!(exact, Some(StartError::NotStarted));
}

/// Runs `start` from a task "caller" of the target nursery, inside a
/// CancelScope; returns the log, what `start` returned, whether the scope
/// caught a Cancelled, and the target nursery's outcome.
fn start_in_cancel_scope(
    seed: u64,
    cancel_before: bool,
    child: impl FnOnce(TaskStatus<u32>, Log, TaskId) -> std::pin::Pin<Box<dyn Future<Output = Result<(), Cancelled>>>>
        + 'static,
) -> (Vec<String>, String, bool, String) {
    let log = Log::default();
    let l = log.clone();
    let result: Rc<RefCell<(String, bool)>> = Rc::default();
    let res = result.clone();
    let out = Builder::new().seed(seed).clock(autojump_clock()).run(open_nursery(move |target| async move {
        let scope = CancelScope::new();
        if cancel_before {
            scope.cancel();
        } else {
            let (sc, l) = (scope.clone(), l.clone());
            target.start_soon_named("canceller", async move {
                wait_all_tasks_blocked().await?;
                l.push("cancel the caller's scope");
                sc.cancel();
                Ok::<(), Cancelled>(())
            })?;
        }
        let t2 = target.clone();
        target.start_soon_named("caller", async move {
            let caller_id = current_task().id;
            let r = scope
                .run(async {
                    let r = t2.start(move |status: TaskStatus<u32>| child(status, l, caller_id)).await;
                    res.borrow_mut().0 = describe(&r);
                    r
                })
                .await;
            res.borrow_mut().1 = scope.cancelled_caught();
            r.map(|_| ())
        })?;
        Ok::<_, BoxError>(())
    }));
    let (started, caught) = result.borrow().clone();
    (log.get(), started, caught, describe_multi(&out))
}

/// N12 (Trio's test_nursery_start, `just_started`): `start` inside an
/// already-cancelled scope, with a child that calls `started(7)` and then
/// reaches a checkpoint, reports Cancelled: `started` does not move the
/// child (its parent is still the caller, its next checkpoint is still
/// cancelled), and the child's `Cancelled` comes out of `start`, so `start`
/// does not return 7.
#[test]
fn n12_start_in_cancelled_scope_reports_cancelled_and_started_has_no_effect() {
    let (log, started, caught, target) = start_in_cancel_scope(12, true, |status, l, caller_id| {
        Box::pin(async move {
            l.push("child runs");
            status.started(7);
            l.push(format!("after started(), parent is the caller: {}", current_task().parent == Some(caller_id)));
            let r = checkpoint().await;
            l.push(format!("checkpoint after started(): {r:?}"));
            r
        })
    });
    assert_eq!(
        log,
        strings(&[
            "child runs",
            "after started(), parent is the caller: true",
            "checkpoint after started(): Err(Cancelled)"
        ])
    );
    assert_eq!(started, "Err(Cancelled)");
    assert!(caught, "the caller's scope caught start's Cancelled");
    assert_eq!(target, "Ok(Some(()))");
}

/// N12: the caller's scope is cancelled while `start` is in progress (the
/// child is blocked before `started()`); the child wakes with Cancelled at
/// t=0, its `started(7)` then has no effect, and `start` reports Cancelled.
#[test]
fn n12_start_cancelled_while_in_progress_reports_cancelled_and_started_has_no_effect() {
    for seed in 0..8 {
        let (log, started, caught, target) = start_in_cancel_scope(seed, false, |status, l, caller_id| {
            Box::pin(async move {
                let r = sleep(Duration::from_secs(3600)).await;
                l.push(format!("child woke: {r:?} at t={}", secs()));
                status.started(7);
                l.push(format!("after started(), parent is the caller: {}", current_task().parent == Some(caller_id)));
                let r = checkpoint().await;
                l.push(format!("checkpoint after started(): {r:?}"));
                r
            })
        });
        assert_eq!(
            log,
            strings(&[
                "cancel the caller's scope",
                "child woke: Err(Cancelled) at t=0",
                "after started(), parent is the caller: true",
                "checkpoint after started(): Err(Cancelled)"
            ]),
            "seed {seed}"
        );
        assert_eq!(started, "Err(Cancelled)", "seed {seed}");
        assert!(caught, "seed {seed}");
        assert_eq!(target, "Ok(Some(()))", "seed {seed}");
    }
}

/// N12: same, but the child swallows its Cancelled, calls `started(7)` and
/// returns normally. As in Trio (test_nursery_start,
/// `started_with_no_checkpoint`): `started` in a cancelled caller records
/// the value without moving the child, waiting in `start` is no cancel
/// point, and the child ended without error, so `start` returns 7 and the
/// caller's scope catches nothing, whatever order the scheduler runs the
/// caller and the child in. (Before trioxide followed Trio here, `start`
/// reported Cancelled and the scope caught it.)
#[test]
fn n12_cancelled_start_returns_the_value_if_the_child_swallows_its_cancel_in_every_schedule() {
    let mut outcomes = Vec::new();
    for seed in 0..8 {
        let (log, started, caught, target) = start_in_cancel_scope(seed, false, |status, l, _| {
            Box::pin(async move {
                let r = sleep(Duration::from_secs(3600)).await;
                l.push(format!("child woke: {r:?}"));
                status.started(7);
                Ok(())
            })
        });
        assert_eq!(log, strings(&["cancel the caller's scope", "child woke: Err(Cancelled)"]), "seed {seed}");
        outcomes.push((seed, started, caught, target));
    }
    let expected: Vec<(u64, String, bool, String)> =
        (0..8).map(|s| (s, "Ok(7)".to_string(), false, "Ok(Some(()))".to_string())).collect();
    assert_eq!(outcomes, expected, "(seed, what start returned, cancelled_caught, target nursery's result)");
}

/// N13: `start` on a closed nursery fails at once (on its first poll, with
/// no schedule point) with NurseryClosed, without calling the spawn function.
#[test]
fn n13_start_on_closed_nursery_fails_at_once_with_nursery_closed() {
    let called = Rc::new(Cell::new(false));
    let c = called.clone();
    let (first_poll, was_closed, t) = Builder::new().seed(13).clock(autojump_clock()).run(async move {
        let kept: Rc<RefCell<Option<Nursery>>> = Rc::default();
        let k = kept.clone();
        open_nursery(move |n| {
            *k.borrow_mut() = Some(n);
            async { Ok::<_, BoxError>(()) }
        })
        .await
        .unwrap();
        let n = kept.borrow_mut().take().unwrap();
        let was_closed = n.is_closed();
        let mut fut = pin!(n.start(move |status: TaskStatus<u32>| {
            c.set(true);
            async move { status.started(1) }
        }));
        let first_poll = poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
        let first_poll = match first_poll {
            Poll::Ready(r) => format!("Ready({})", describe(&r)),
            Poll::Pending => "Pending".to_string(),
        };
        (first_poll, was_closed, secs())
    });
    assert!(was_closed);
    assert_eq!(first_poll, "Ready(Err(NurseryClosed))");
    assert!(!called.get(), "the spawn function was not called");
    assert_eq!(t, 0);
}

/// N13 (test_nursery_start_keeps_nursery_open): two `start` calls into
/// nursery2, made from tasks of nursery1 at t=0 and t=1, keep nursery2 open
/// after its body exits at t=1, although it has no children yet; the
/// children arrive at t=2 and t=3 and finish at t=5 and t=6, and nursery2
/// closes at t=6 = 1 + 2 + 3.
#[test]
fn n13_start_in_progress_keeps_target_nursery_open_until_child_arrives_and_ends() {
    let log = Log::default();
    let l = log.clone();
    let out = Builder::new().seed(14).clock(autojump_clock()).run(open_nursery(move |n1| async move {
        let keep: Rc<RefCell<Option<Nursery>>> = Rc::default();
        let (k, l2, n1c) = (keep.clone(), l.clone(), n1.clone());
        let r = open_nursery(move |n2| async move {
            *k.borrow_mut() = Some(n2.clone());
            let starter = |tag: &'static str| {
                let (n2, l) = (n2.clone(), l2.clone());
                async move {
                    let l3 = l.clone();
                    let r = n2
                        .start(move |status: TaskStatus<()>| async move {
                            sleep(Duration::from_secs(2)).await?;
                            l3.push(format!("{tag} calls started() at t={}", secs()));
                            status.started(());
                            sleep(Duration::from_secs(3)).await?;
                            l3.push(format!("{tag} ends at t={}", secs()));
                            Ok::<(), BoxError>(())
                        })
                        .await;
                    l.push(format!("{tag}'s start returned {} at t={}", describe(&r), secs()));
                    r
                }
            };
            n1c.start_soon(starter("a"))?;
            sleep(Duration::from_secs(1)).await?;
            n1c.start_soon(starter("b"))?;
            l2.push(format!("nursery2's body exits at t={}", secs()));
            Ok::<_, BoxError>(())
        })
        .await;
        let closed = keep.borrow().as_ref().unwrap().is_closed();
        l.push(format!("nursery2 returned {} at t={} (closed: {closed})", describe_multi(&r), secs()));
        r?;
        Ok::<_, BoxError>(())
    }));
    assert_eq!(describe_multi(&out), "Ok(Some(()))");
    assert_eq!(
        log.get(),
        strings(&[
            "nursery2's body exits at t=1",
            "a calls started() at t=2",
            "a's start returned Ok(()) at t=2",
            "b calls started() at t=3",
            "b's start returned Ok(()) at t=3",
            "a ends at t=5",
            "b ends at t=6",
            "nursery2 returned Ok(Some(())) at t=6 (closed: true)"
        ])
    );
}
