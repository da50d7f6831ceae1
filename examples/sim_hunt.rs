//! Hunts planted bugs with `trioxide::sim`: runs one workload (each built
//! to catch one kind of bug: a lost wake-up, a receive that drops a value
//! on cancel, an unshielded cleanup await, a missing durable ack, an
//! off-by-one deadline) for seeds FIRST..FIRST+N under one schedule, and
//! reports how many seeds broke its invariant and the first one, with the
//! line that replays it. On the unpatched tree every workload passes;
//! `benches/sim_bugs.sh` applies one patch of `benches/sim_bugs/` per bug
//! to a scratch copy and tabulates what each schedule finds.
//!
//! ```text
//! cargo run --release --example sim_hunt -- --bug wakeup --seeds 1000 --schedule pct3
//! TRIOXIDE_SIM=seed=12,schedule=pct3 cargo run --release --example sim_hunt -- --bug wakeup   # one case
//! ```

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant as WallInstant;

use trioxide::sim::{self, Case, Failure};
use trioxide::Schedule;

#[path = "common/args.rs"]
mod args;

#[path = "common/hunt_workloads.rs"]
mod hunt;

use hunt::Workload;

const ABOUT: &str = "Runs a bug-hunting workload under trioxide::sim for many seeds and counts the failing ones.";

const FLAGS: &[args::Flag] = &[
    args::Flag {
        name: "bug",
        value: "NAME",
        default: "wakeup",
        help: "the workload: wakeup, recv-cancel, cleanup, ack or deadline",
    },
    args::Flag { name: "seeds", value: "N", default: "1000", help: "run seeds FIRST..FIRST+N" },
    args::Flag { name: "first", value: "SEED", default: "0", help: "the first seed" },
    args::Flag { name: "schedule", value: "S", default: "batch", help: "the schedule: batch, random or pctD" },
];

/// Runs one case; a panic is a failure too.
fn run_one(workload: Workload, case: Case) -> Result<(), Failure> {
    let message = match catch_unwind(AssertUnwindSafe(|| workload.run(case))) {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(e)) => e,
        Err(panic) => match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
            (Some(s), _) => format!("panicked: {s}"),
            (_, Some(s)) => format!("panicked: {s}"),
            _ => "panicked".to_string(),
        },
    };
    Err(Failure { case, message: message.replace('\n', " | ") })
}

fn reproduce(workload: Workload, case: Case) -> String {
    format!("{}={case} cargo run --release --example sim_hunt -- --bug {workload}", sim::SIM_ENV)
}

fn main() {
    let args = args::Args::parse("sim_hunt", ABOUT, FLAGS);
    let workload: Workload = args.get("bug");
    let seeds: u64 = args.get("seeds");
    let first: u64 = args.get("first");
    let schedule: Schedule = args.get("schedule");
    match Case::from_env() {
        Ok(Some(_)) => {
            // Exactly the case the environment names (`explore` reads it).
            let result = sim::explore(std::iter::empty(), schedule, |case| workload.run(case));
            println!("trace hash {:#018x}", hunt::last_trace_hash());
            match result {
                Ok(_) => println!("sim_hunt: bug={workload} passed"),
                Err(failure) => {
                    println!("{failure}");
                    std::process::exit(1);
                }
            }
            return;
        }
        Ok(None) => {}
        Err(e) => {
            eprintln!("sim_hunt: {e}");
            std::process::exit(2);
        }
    }
    let start = WallInstant::now();
    let mut failing = 0u64;
    let mut first_failure: Option<Failure> = None;
    for seed in first..first + seeds {
        if let Err(f) = run_one(workload, Case { seed, schedule }) {
            failing += 1;
            first_failure.get_or_insert(f);
        }
    }
    let first_seed = first_failure.as_ref().map_or_else(|| "none".to_string(), |f| f.case.seed.to_string());
    println!(
        "sim_hunt: bug={workload} schedule={schedule} seeds={first}..{} failing={failing} first={first_seed} wall={:.2}s",
        first + seeds,
        start.elapsed().as_secs_f64()
    );
    if let Some(f) = first_failure {
        println!("{f}");
        println!("reproduce: {}", reproduce(workload, f.case));
        std::process::exit(1);
    }
}
