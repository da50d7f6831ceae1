//! The replicated key-value store of `examples/sim_kv.rs` under simulated
//! faults: deterministic seed by seed, every acked write readable after
//! healing, and a planted bug found with its one-line reproduction.

#[path = "../examples/common/sim_kv_world.rs"]
mod world;

use trioxide::sim::{self, Case};
use trioxide::Schedule;

/// Seeds the debug suite runs (the release example runs 10,000: see
/// BENCHMARKS.md).
const SEEDS: u64 = 200;

#[test]
fn sim_kv_keeps_every_acked_write_and_is_deterministic_over_200_seeds() {
    let mut acked = 0;
    let ran = sim::explore(0..SEEDS, Schedule::Batch, |case| -> Result<(), String> {
        let (out, hash) = world::run_case(case, false)?;
        let (again, hash2) = world::run_case(case, false)?;
        if (hash2, &again) != (hash, &out) {
            return Err(format!("not deterministic: {hash:#018x} then {hash2:#018x}"));
        }
        acked += out.acked;
        out.violation.map_or(Ok(()), Err)
    })
    .unwrap();
    assert_eq!(ran, SEEDS);
    // Faults cost some writes, but most get through.
    assert!(acked > (SEEDS as u32) * world::WRITES * 9 / 10, "only {acked} writes acked");
}

#[test]
fn the_exploring_schedules_keep_the_invariant_too() {
    for schedule in [Schedule::Random, Schedule::pct(3)] {
        let ran = sim::explore(0..50, schedule, |case| -> Result<(), String> {
            world::run_case(case, false)?.0.violation.map_or(Ok(()), Err)
        });
        assert_eq!(ran, Ok(50), "{schedule}");
    }
}

#[test]
fn a_primary_that_acks_from_memory_loses_writes_on_restart_and_a_seed_shows_it() {
    let failure = sim::explore(0..SEEDS, Schedule::Batch, |case| -> Result<(), String> {
        world::run_case(case, true)?.0.violation.map_or(Ok(()), Err)
    })
    .unwrap_err();
    let line = failure.to_string();
    assert!(line.contains("after healing") || line.contains("during the faults"), "{line}");
    assert!(line.ends_with(&format!("re-run with TRIOXIDE_SIM={}", failure.case)), "{line}");
    // The same case fails again, identically.
    let again = world::run_case(Case { seed: failure.case.seed, schedule: Schedule::Batch }, true).unwrap();
    assert_eq!(again.0.violation.as_deref(), Some(failure.message.as_str()));
}
