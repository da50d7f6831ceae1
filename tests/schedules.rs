//! The scheduling strategies (`trioxide::Schedule`): the batch pass stays
//! Trio's (S1–S3), the exploring strategies interleave differently, keep
//! the nursery and cancel rules, and find a planted lost update.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::rc::Rc;

use trioxide::{checkpoint, open_nursery, BoxError, Builder, Schedule};

#[path = "random_trees.rs"]
#[allow(dead_code, unreachable_pub)]
mod random_trees;

/// Three tasks, each logging its letter four times, a checkpoint after each.
fn order(seed: u64, schedule: Schedule) -> String {
    let log = Rc::new(RefCell::new(String::new()));
    let l = log.clone();
    Builder::new()
        .seed(seed)
        .schedule(schedule)
        .run(open_nursery(|n| async move {
            for who in ['a', 'b', 'c'] {
                let l = l.clone();
                n.start_soon(async move {
                    for _ in 0..4 {
                        l.borrow_mut().push(who);
                        checkpoint().await?;
                    }
                    Ok::<_, BoxError>(())
                })?;
            }
            Ok::<_, BoxError>(())
        }))
        .unwrap();
    let s = log.borrow().clone();
    s
}

/// Under S1–S3 every task runs once per pass: the log is four rounds, each
/// a permutation of "abc" that is the spawn order or its reverse.
fn is_batch_order(s: &str) -> bool {
    s.len() == 12 && s.as_bytes().chunks(3).all(|c| c == b"abc" || c == b"cba")
}

#[test]
fn batch_schedule_is_the_default_and_keeps_passes() {
    for seed in 0..50 {
        let default = order(seed, Schedule::Batch);
        let implicit = {
            let log = Rc::new(RefCell::new(String::new()));
            let l = log.clone();
            Builder::new()
                .seed(seed)
                .run(open_nursery(|n| async move {
                    for who in ['a', 'b', 'c'] {
                        let l = l.clone();
                        n.start_soon(async move {
                            for _ in 0..4 {
                                l.borrow_mut().push(who);
                                checkpoint().await?;
                            }
                            Ok::<_, BoxError>(())
                        })?;
                    }
                    Ok::<_, BoxError>(())
                }))
                .unwrap();
            let s = log.borrow().clone();
            s
        };
        assert_eq!(default, implicit, "seed {seed}");
        assert!(is_batch_order(&default), "seed {seed}: {default}");
    }
}

#[test]
fn exploring_schedules_leave_the_passes_and_replay_from_the_seed() {
    for schedule in [Schedule::Random, Schedule::pct(3)] {
        let orders: Vec<String> = (0..50).map(|seed| order(seed, schedule)).collect();
        for (seed, o) in orders.iter().enumerate() {
            assert_eq!(o, &order(seed as u64, schedule), "{schedule} seed {seed} replays");
            assert_eq!(o.matches('a').count(), 4, "{schedule}: {o}");
        }
        let distinct: BTreeSet<&String> = orders.iter().collect();
        let non_batch = orders.iter().filter(|o| !is_batch_order(o)).count();
        eprintln!("{schedule}: {} distinct orders, {non_batch} of 50 leave the passes", distinct.len());
        // PCT without a change point in a run this short gives one of the
        // 3! priority orders; the change points add the rest.
        let want = if schedule == Schedule::Random { (50, 50) } else { (13, 50) };
        assert_eq!((distinct.len(), non_batch), want, "{schedule}");
    }
    // PCT runs the highest-priority task until it blocks or a change point
    // demotes it: with depth 1 (no change points) each task runs all four
    // steps in one go.
    for seed in 0..20 {
        let o = order(seed, Schedule::Pct { depth: 1, steps: 100 });
        assert!(o.as_bytes().chunks(4).all(|c| c.iter().all(|&x| x == c[0])), "seed {seed}: {o}");
    }
}

#[test]
fn random_trees_keep_structured_concurrency_under_random_and_pct() {
    random_trees::quiet_injected_panics();
    for schedule in [Schedule::Random, Schedule::pct(3), Schedule::pct(2)] {
        random_trees::SCHEDULE.set(schedule);
        let mut stats = random_trees::Stats::default();
        for seed in 0..300 {
            if let Err(what) = random_trees::run_seed(seed, false, &mut stats) {
                panic!("{schedule} seed {seed}: {what}");
            }
        }
        eprintln!("{schedule}: {stats:?}");
    }
}

/// The planted bug: two tasks each read a shared counter, checkpoint, and
/// write back the value read plus one. The second task first passes
/// `offset` checkpoints: with two, batch passes (one step per task per
/// pass, S3) always run the first task's write (its second step) before the
/// second task's read (its third), so only an exploring schedule loses the
/// update.
fn lost_update(seed: u64, schedule: Schedule, offset: usize) -> u32 {
    let c = Rc::new(Cell::new(0));
    let c2 = c.clone();
    Builder::new()
        .seed(seed)
        .schedule(schedule)
        .run(open_nursery(|n| async move {
            for task in 0..2 {
                let c = c2.clone();
                n.start_soon(async move {
                    for _ in 0..if task == 1 { offset } else { 0 } {
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
        .unwrap();
    c.get()
}

/// The first seed (of 0..limit) that loses an update, if any.
fn first_failing_seed(schedule: Schedule, offset: usize, limit: u64) -> Option<u64> {
    (0..limit).find(|&seed| lost_update(seed, schedule, offset) != 2)
}

/// How many seeds of `0..1000` lose the update.
fn failing_seeds(schedule: Schedule, offset: usize) -> usize {
    (0..1000).filter(|&seed| lost_update(seed, schedule, offset) != 2).count()
}

#[test]
fn planted_lost_update_is_found_by_each_strategy() {
    let short = Schedule::Pct { depth: 3, steps: 10 }; // K near the run's ~9 steps
    let all = [Schedule::Batch, Schedule::Random, Schedule::pct(2), Schedule::pct(3), short];
    for offset in 0..3 {
        let first: Vec<Option<u64>> = all.iter().map(|&s| first_failing_seed(s, offset, 1000)).collect();
        let counts: Vec<usize> = all.iter().map(|&s| failing_seeds(s, offset)).collect();
        eprintln!("offset {offset}: first failing seed (batch, random, pct2, pct3, pct3:10) {first:?}, failing of 1000 {counts:?}");
    }
    // Both reads in the first pass: batch always loses the update.
    assert_eq!(failing_seeds(Schedule::Batch, 0), 1000);
    // Two checkpoints apart: batch never does; the exploring ones do.
    assert_eq!(first_failing_seed(Schedule::Batch, 2, 1000), None);
    assert_eq!(first_failing_seed(Schedule::Random, 2, 1000), Some(1));
    assert_eq!(first_failing_seed(Schedule::pct(3), 2, 1000), Some(7));
    assert_eq!(first_failing_seed(short, 2, 1000), Some(5));
    assert_eq!(failing_seeds(Schedule::Random, 2), 254);
    assert_eq!(failing_seeds(Schedule::pct(3), 2), 25);
    assert_eq!(failing_seeds(short, 2), 173);
}
