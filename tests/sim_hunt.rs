//! The bug-hunting workloads of `examples/sim_hunt.rs` pass on the
//! unpatched tree under every schedule (`benches/sim_bugs.sh` plants one
//! bug per workload in a scratch copy and counts the seeds that find it;
//! this keeps the workloads themselves correct), and a failing case is
//! reported as one line that replays it.

use trioxide::sim::{self, Case};
use trioxide::Schedule;

#[path = "../examples/common/hunt_workloads.rs"]
mod hunt;

use hunt::Workload;

const SEEDS: u64 = 50;

fn passes_everywhere(workload: Workload) {
    for schedule in [Schedule::Batch, Schedule::Random, Schedule::pct(3)] {
        let ran = sim::explore(0..SEEDS, schedule, |case| workload.run(case));
        assert_eq!(ran, Ok(SEEDS), "{workload} under {schedule}");
    }
}

#[test]
fn wakeup_workload_passes() {
    passes_everywhere(Workload::Wakeup);
}

#[test]
fn recv_cancel_workload_passes() {
    passes_everywhere(Workload::RecvCancel);
}

#[test]
fn cleanup_workload_passes() {
    passes_everywhere(Workload::Cleanup);
}

#[test]
fn ack_workload_passes() {
    passes_everywhere(Workload::Ack);
}

#[test]
fn deadline_workload_passes() {
    passes_everywhere(Workload::Deadline);
}

#[test]
fn workload_names_round_trip() {
    for w in Workload::ALL {
        assert_eq!(w.name().parse::<Workload>(), Ok(w));
    }
    assert_eq!(
        "lost".parse::<Workload>(),
        Err("unknown workload `lost` (one of wakeup, recv-cancel, cleanup, ack, deadline)".to_string())
    );
}

#[test]
fn a_workload_replays_its_case_exactly() {
    // The same case twice: the same trace, bit for bit (what makes the
    // one-line reproduction of a failure trustworthy).
    for w in Workload::ALL {
        let case = Case { seed: 11, schedule: Schedule::pct(3) };
        let a = hunt::trace_hash(w, case);
        let b = hunt::trace_hash(w, case);
        assert_eq!(a, b, "{w}");
    }
}
