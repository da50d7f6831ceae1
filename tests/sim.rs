//! `trioxide::sim`: one seed and schedule give one trace, bit for bit;
//! `check_determinism` names the first divergence; `explore` reports the
//! first failing case as one line and `TRIOXIDE_SIM` replays exactly it.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use trioxide::channel::ReceiveError;
use trioxide::sim::{self, Case, Failure};
use trioxide::sync::Lock;
use trioxide::{checkpoint, move_on_after, open_memory_channel, open_nursery, sleep, BoxError, Builder, Schedule};

/// Distinct traces among 200 seeds of `workload` (pinned: the runs are
/// deterministic). Batch passes reorder less than the exploring strategies.
const BATCH_DISTINCT: usize = 97;
const RANDOM_DISTINCT: usize = 200;
const PCT_DISTINCT: usize = 161;
const SCHEDULES: [Schedule; 3] = [Schedule::Batch, Schedule::Random, Schedule::pct(3)];

/// Nurseries, a cancel scope with a deadline, sleeps, a channel and a
/// Lock: three producers take the lock, log, checkpoint inside it and send;
/// a consumer logs what it receives; a fourth task is cut off by a
/// timeout. Returns the log.
async fn workload() -> Result<Vec<u32>, BoxError> {
    let log = Rc::new(RefCell::new(Vec::new()));
    let lock = Rc::new(Lock::new());
    let (tx, rx) = open_memory_channel::<u32>(2);
    let l = log.clone();
    open_nursery(|n| async move {
        for p in 0..3u32 {
            let (tx, lock, l) = (tx.try_clone()?, lock.clone(), l.clone());
            n.start_soon(async move {
                for i in 0..4u32 {
                    sleep(Duration::from_millis(u64::from((p * 7 + i * 3) % 5))).await?;
                    let guard = lock.acquire().await?;
                    l.borrow_mut().push(p * 100 + i);
                    checkpoint().await?;
                    drop(guard);
                    tx.send(p * 100 + i).await?;
                }
                Ok::<_, BoxError>(())
            })?;
        }
        drop(tx);
        let l2 = l.clone();
        n.start_soon(async move {
            loop {
                match rx.receive().await {
                    Ok(v) => l2.borrow_mut().push(1000 + v),
                    Err(ReceiveError::EndOfChannel) => return Ok::<_, BoxError>(()),
                    Err(e) => return Err(e.into()),
                }
            }
        })?;
        let l3 = l.clone();
        n.start_soon(async move {
            let r = move_on_after(Duration::from_millis(6), async {
                sleep(Duration::from_secs(3600)).await?;
                Ok::<_, trioxide::Cancelled>(())
            })
            .await?;
            l3.borrow_mut().push(if r.is_none() { 9999 } else { 0 });
            Ok::<_, BoxError>(())
        })?;
        Ok::<_, BoxError>(())
    })
    .await?;
    let v = log.borrow().clone();
    Ok(v)
}

#[test]
fn same_seed_and_schedule_give_the_same_trace_for_200_seeds() {
    for schedule in SCHEDULES {
        let mut hashes = BTreeSet::new();
        for seed in 0..200 {
            let b = sim::Builder::new().seed(seed).schedule(schedule);
            let trace = b.check_determinism(workload);
            let (out, report, again) = b.run_with_trace(workload());
            let log = out.unwrap();
            assert_eq!(log.len(), 12 + 12 + 1, "{schedule} seed {seed}: {log:?}");
            assert_eq!(log.iter().filter(|&&v| v == 9999).count(), 1, "the timeout cut its task off");
            assert_eq!((report.tasks_left, report.timers_left, report.task_allocations_left), (0, 0, 0));
            assert_eq!(report.trace_hash, Some(trace.hash()));
            assert_eq!(again, trace);
            hashes.insert(trace.hash());
        }
        eprintln!("{schedule}: {} distinct traces in 200 seeds", hashes.len());
        // Deterministic too: the number of distinct interleavings seen.
        let want = match schedule {
            Schedule::Batch => BATCH_DISTINCT,
            Schedule::Random => RANDOM_DISTINCT,
            _ => PCT_DISTINCT,
        };
        assert_eq!(hashes.len(), want, "{schedule}");
    }
}

#[test]
fn different_schedules_give_different_traces() {
    for seed in 0..20 {
        let hashes: BTreeSet<u64> = SCHEDULES
            .iter()
            .map(|&s| sim::Builder::new().seed(seed).schedule(s).run_with_trace(workload()).2.hash())
            .collect();
        assert_eq!(hashes.len(), 3, "seed {seed}");
    }
}

#[test]
fn tracing_is_off_unless_asked_for() {
    let ((), report) = Builder::new().seed(1).run_with_report(async {});
    assert_eq!(report.trace_hash, None);
    let ((), report) = Builder::new().seed(1).trace(true).run_with_report(async {});
    assert!(report.trace_hash.is_some());
}

#[test]
fn simulated_time_jumps_and_the_trace_records_it() {
    let (slept, _, trace) = sim::Builder::new().seed(2).run_with_trace(async {
        let t0 = trioxide::current_time();
        sleep(Duration::from_secs(86_400)).await.unwrap();
        trioxide::current_time().saturating_duration_since(t0)
    });
    assert_eq!(slept, Duration::from_secs(86_400));
    let kinds: Vec<String> = trace.events().iter().map(|e| format!("{e:?}")).collect();
    assert_eq!(kinds.len(), 4, "{kinds:?}");
    assert!(kinds[0].starts_with("Step(") && kinds[3].starts_with("Step("), "{kinds:?}");
    assert!(kinds[1].starts_with("Jump(") && kinds[2].starts_with("Timers {"), "{kinds:?}");
}

#[test]
fn check_determinism_names_the_first_diverging_event() {
    // The second run checkpoints once more than the first.
    static RUNS: AtomicU32 = AtomicU32::new(0);
    let r = catch_unwind(AssertUnwindSafe(|| {
        sim::check_determinism(5, || async {
            let extra = RUNS.fetch_add(1, Ordering::Relaxed);
            for _ in 0..=extra {
                checkpoint().await.unwrap();
            }
        })
    }));
    let panic = r.unwrap_err();
    let msg = panic.downcast_ref::<String>().unwrap();
    assert!(
        msg.starts_with(
            "trioxide sim: seed=5,schedule=batch is not deterministic: the traces first differ at event #2: \
             first run None, second run Some(Step(TaskId("
        ),
        "{msg}"
    );
    assert!(msg.ends_with("2 vs 3 events)"), "{msg}");
}

/// The planted bug: a lost update, the second task two checkpoints late,
/// which batch passes never interleave (see tests/schedules.rs).
fn lost_update(case: Case) -> Result<(), String> {
    let c = Rc::new(Cell::new(0));
    let c2 = c.clone();
    case.builder()
        .run(open_nursery(|n| async move {
            for task in 0..2 {
                let c = c2.clone();
                n.start_soon(async move {
                    for _ in 0..2 * task {
                        checkpoint().await?;
                    }
                    let v = c.get();
                    checkpoint().await?;
                    c.set(v + 1);
                    Ok::<_, BoxError>(())
                })?;
            }
            Ok::<_, BoxError>(())
        }))
        .map_err(|e| e.to_string())?;
    match c.get() {
        2 => Ok(()),
        n => Err(format!("lost update: counter is {n}")),
    }
}

#[test]
fn explore_reports_the_first_failing_case_as_one_line() {
    if std::env::var(sim::SIM_ENV).is_ok() {
        return; // the child of the replay test runs only its own test
    }
    assert_eq!(sim::explore(0..1000, Schedule::Batch, lost_update), Ok(1000));
    let f: Failure = sim::explore(0..1000, Schedule::Random, lost_update).unwrap_err();
    assert_eq!(f.case, Case { seed: 1, schedule: Schedule::Random });
    assert_eq!(
        f.to_string(),
        "trioxide sim: failed at seed=1 schedule=random: lost update: counter is 1; \
         re-run with TRIOXIDE_SIM=seed=1,schedule=random"
    );
    let f = sim::explore(0..1000, Schedule::pct(3), lost_update).unwrap_err();
    assert_eq!(f.case.seed, 7);
    // A panic is a failure too, reported on one line.
    let f = sim::explore(10..20, Schedule::Batch, |case| -> Result<(), String> {
        assert!(case.seed != 13, "boom\nsecond line");
        Ok(())
    })
    .unwrap_err();
    assert_eq!(f.case.seed, 13);
    assert_eq!(f.message, "panicked: boom | second line");
    // The line's case parses back.
    let replay = f.to_string().rsplit_once("TRIOXIDE_SIM=").unwrap().1.parse::<Case>().unwrap();
    assert_eq!(replay, f.case);
}

/// Run as a child process by the test below, with `TRIOXIDE_SIM` set.
#[test]
#[ignore = "run by trioxide_sim_env_replays_exactly_that_case with TRIOXIDE_SIM set"]
fn explore_child_runs_only_the_env_case() {
    let seen = RefCell::new(Vec::new());
    let r = sim::explore(0..1000, Schedule::Batch, |case| {
        seen.borrow_mut().push(case);
        lost_update(case)
    });
    let want = Case { seed: 1, schedule: Schedule::Random };
    assert_eq!(*seen.borrow(), vec![want]);
    assert_eq!(r.unwrap_err().case, want);
}

#[test]
fn trioxide_sim_env_replays_exactly_that_case() {
    if std::env::var(sim::SIM_ENV).is_ok() {
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "explore_child_runs_only_the_env_case", "--ignored", "--nocapture", "--test-threads=1"])
        .env(sim::SIM_ENV, "seed=1,schedule=random")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "{stdout}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("trioxide sim:")).collect();
    assert_eq!(
        lines,
        ["trioxide sim: failed at seed=1 schedule=random: lost update: counter is 1; \
          re-run with TRIOXIDE_SIM=seed=1,schedule=random"]
    );
}

#[test]
fn to_thread_runs_inline_under_sim_and_on_a_worker_otherwise() {
    let here = std::thread::current().id();
    let main = || async move {
        let there = trioxide::to_thread::run_sync(|| std::thread::current().id()).await?;
        Ok::<_, BoxError>(there)
    };
    let (there, _, trace) = sim::Builder::new().seed(1).run_with_trace(main());
    assert_eq!(there.unwrap(), here);
    // The call yielded once after the closure: two steps of main, nothing else.
    assert_eq!(trace.len(), 2, "{:?}", trace.events());
    let there = Builder::new().seed(1).run(main()).unwrap();
    assert_ne!(there, here);
}
