//! A replicated key-value store on the simulated network of
//! `trioxide::sim`, under faults, checked for one invariant: every write
//! the client saw acknowledged is readable once the network has healed.
//!
//! Four hosts: `kv1`, the primary, serves the client on port 7000 and
//! acknowledges a `SET` only after both backups (`kv2`, `kv3`, port 7001)
//! acknowledged it and it is on its own disk; `client` writes 24 keys
//! (retrying until acknowledged) and reads earlier ones back. Meanwhile a
//! fault task, drawing from the seed, partitions hosts, clogs them, and
//! kills and restarts them (a host's disk survives a restart; its memory
//! does not). The network's latency, jitter, loss, bandwidth and partition
//! timeout are drawn from the seed too (`NetConfig::swarm`), so a seed and
//! a schedule are the whole case. The code is written against trioxide's
//! ordinary API (`serve_tcp`, `open_tcp_stream`, `TcpStream`): only `main`
//! knows it is simulated.
//!
//! ```text
//! cargo run --release --example sim_kv                     # one run, seed from TRIOXIDE_SEED
//! cargo run --release --example sim_kv -- --seeds 1000     # seeds 0..1000, stops at the first failure
//! cargo run --release --example sim_kv -- --seeds 10000 --check-determinism
//! cargo run --release --example sim_kv -- --seeds 1000 --bug   # a planted bug: the primary acks from memory
//! TRIOXIDE_SIM=seed=42,schedule=batch cargo run --release --example sim_kv   # exactly one case
//! ```

use std::cell::Cell;
use std::time::{Duration, Instant as WallInstant};

use trioxide::sim::{self, Case};
use trioxide::Schedule;

#[path = "common/args.rs"]
mod args;

const ABOUT: &str = "A replicated key-value store under simulated network faults, checked for lost writes.";

const FLAGS: &[args::Flag] = &[
    args::Flag {
        name: "seeds",
        value: "N",
        default: "0",
        help: "run seeds FIRST..FIRST+N (0: one run, seed from TRIOXIDE_SEED)",
    },
    args::Flag { name: "first", value: "SEED", default: "0", help: "the first seed of --seeds" },
    args::Flag { name: "schedule", value: "S", default: "batch", help: "the schedule: batch, random or pctD" },
    args::Flag {
        name: "check-determinism",
        value: "",
        default: "",
        help: "run each seed twice and compare trace hashes",
    },
    args::Flag {
        name: "bug",
        value: "",
        default: "",
        help: "plant a bug: the primary keeps acked writes in memory only",
    },
];

#[path = "common/sim_kv_world.rs"]
mod world;

use world::{config, run_case, WRITES};

fn main() {
    let args = args::Args::parse("sim_kv", ABOUT, FLAGS);
    let seeds: u64 = args.get("seeds");
    let first: u64 = args.get("first");
    let schedule: Schedule = args.get("schedule");
    let check = args.switch("check-determinism");
    let bug = args.switch("bug");
    let flags = if bug { " --bug" } else { "" };
    if seeds == 0 {
        let case = match Case::from_env() {
            Ok(Some(case)) => case,
            Ok(None) => {
                let seed = std::env::var(trioxide::SEED_ENV).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
                Case { seed, schedule }
            }
            Err(e) => {
                eprintln!("sim_kv: {e}");
                std::process::exit(2);
            }
        };
        println!("case {case}, network {}", config(case.seed));
        match run_case(case, bug) {
            Ok((out, hash)) => {
                println!(
                    "outcome: {} of {WRITES} writes acked, {} reads, {} faults, {:.3} s virtual",
                    out.acked,
                    out.reads,
                    out.faults,
                    out.virtual_time.as_secs_f64()
                );
                match &out.violation {
                    None => println!("invariant: every acked write is readable after healing: ok"),
                    Some(v) => println!("invariant VIOLATED: {v}"),
                }
                println!("trace hash {hash:#018x}");
                if out.violation.is_some() {
                    std::process::exit(1);
                }
            }
            Err(e) => {
                println!("failed: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let virtual_total = Cell::new(Duration::ZERO);
    let runs = Cell::new(0u64);
    let start = WallInstant::now();
    let result = sim::explore(first..first + seeds, schedule, |case| -> Result<(), String> {
        let (out, hash) = run_case(case, bug)?;
        runs.set(runs.get() + 1);
        virtual_total.set(virtual_total.get() + out.virtual_time);
        if let Some(v) = out.violation {
            return Err(v);
        }
        if check {
            let (again, hash2) = run_case(case, bug)?;
            runs.set(runs.get() + 1);
            virtual_total.set(virtual_total.get() + again.virtual_time);
            if hash2 != hash || again != out {
                return Err(format!("not deterministic: trace hashes {hash:#018x} then {hash2:#018x}"));
            }
        }
        Ok(())
    });
    let wall = start.elapsed().as_secs_f64();
    let virt = virtual_total.get().as_secs_f64();
    match result {
        Ok(n) => {
            println!(
                "{n} seeds ({}..{}) schedule={schedule}: all passed{}",
                first,
                first + n,
                if check { ", each run twice with identical trace hashes" } else { "" }
            );
        }
        Err(failure) => {
            println!("{failure}");
            println!("reproduce: {}={} cargo run --release --example sim_kv --{flags}", sim::SIM_ENV, failure.case);
        }
    }
    println!(
        "{} runs in {wall:.2} s wall: {:.0} seeds/min, {virt:.0} s simulated, {:.0}x real time",
        runs.get(),
        runs.get() as f64 / if check { 2.0 } else { 1.0 } / wall * 60.0,
        virt / wall
    );
}
