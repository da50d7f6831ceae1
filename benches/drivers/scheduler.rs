//! Runs one scheduler case of `benches/scheduler.rs` once, outside
//! criterion, for `valgrind --tool=callgrind` (exact instruction counts,
//! independent of the machine's load) or `perf record`.
//!
//! ```sh
//! cargo build --profile bench --example bench_scheduler_driver
//! valgrind --tool=callgrind target/release/examples/bench_scheduler_driver spawn_join 100000
//! ```
//!
//! Cases (N operations each): spawn_join (N no-op children of one
//! nursery), spawn_join_4k (the same with a 4 KiB buffer in each child's
//! future), switch (2 tasks, N/2 yields each), step (1000 tasks, N/1000
//! yields each), cancel_scope (N `CancelScope::run` enter+exit),
//! move_on_after (N `move_on_after` enter+exit), tokio_timeout (N
//! `tokio::time::timeout` around a ready body on tokio's current-thread
//! runtime with its timer enabled: the same loop as move_on_after, for a
//! side-by-side count). Prints the time per operation. `bash benches/scheduler_instructions.sh` turns two runs into
//! instructions per operation.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use trioxide::{checkpoint, move_on_after, open_nursery, run, BoxError, CancelScope, Cancelled};

fn spawn_join(n: u64) {
    run(open_nursery(|nursery| async move {
        for _ in 0..n {
            nursery.start_soon(async {})?;
        }
        Ok::<_, BoxError>(())
    }))
    .expect("nursery failed");
}

fn spawn_join_4k(n: u64) {
    run(open_nursery(|nursery| async move {
        for _ in 0..n {
            nursery.start_soon(async {
                let buf = [0u8; 4096];
                checkpoint().await?;
                black_box(&buf);
                Ok::<_, Cancelled>(())
            })?;
        }
        Ok::<_, BoxError>(())
    }))
    .expect("nursery failed");
}

fn yielders(tasks: u64, k: u64) {
    run(open_nursery(|n| async move {
        for _ in 0..tasks {
            n.start_soon(async move {
                for _ in 0..k {
                    checkpoint().await?;
                }
                Ok::<_, Cancelled>(())
            })?;
        }
        Ok::<_, BoxError>(())
    }))
    .expect("nursery failed");
}

fn cancel_scope(n: u64) {
    run(async move {
        for _ in 0..n {
            let r = CancelScope::new().run(async { Ok::<_, Cancelled>(()) }).await;
            black_box(r).expect("scope failed");
        }
    })
}

fn move_on(n: u64) {
    run(async move {
        for _ in 0..n {
            let r = move_on_after(Duration::from_secs(3600), async { Ok::<_, Cancelled>(()) }).await;
            black_box(r).expect("scope failed");
        }
    })
}

fn tokio_timeout(n: u64) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("tokio runtime");
    rt.block_on(async move {
        for _ in 0..n {
            let r = tokio::time::timeout(Duration::from_secs(3600), async { Ok::<_, Cancelled>(()) }).await;
            black_box(r).expect("timed out").expect("body failed");
        }
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let usage = || {
        eprintln!("usage: {} spawn_join|spawn_join_4k|switch|step|cancel_scope|move_on_after|tokio_timeout N", args[0]);
        ExitCode::from(2)
    };
    let (Some(case), Some(n)) = (args.get(1), args.get(2)) else {
        return usage();
    };
    let Ok(n) = n.parse::<u64>() else {
        return usage();
    };
    let t = Instant::now();
    match case.as_str() {
        "spawn_join" => spawn_join(n),
        "spawn_join_4k" => spawn_join_4k(n),
        "switch" => yielders(2, n / 2),
        "step" => yielders(1000, n / 1000),
        "cancel_scope" => cancel_scope(n),
        "move_on_after" => move_on(n),
        "tokio_timeout" => tokio_timeout(n),
        _ => return usage(),
    }
    println!("{case}: {:.1} ns/op", t.elapsed().as_nanos() as f64 / n as f64);
    ExitCode::SUCCESS
}
