//! Runs one case of `benches/sync.rs` once, outside criterion, for
//! profilers: `perf record`, or `valgrind --tool=callgrind` (exact
//! instruction counts, independent of the machine's load).
//!
//! ```sh
//! cargo build --profile bench --example bench_sync_driver
//! valgrind --tool=callgrind target/release/examples/bench_sync_driver lock_uncontended trioxide 100000
//! perf record -g target/release/examples/bench_sync_driver pingpong_cap1 tokio 1000000
//! ```
//!
//! Prints the time per operation. Cases: pingpong_cap1, pingpong_cap0
//! (trioxide only), throughput_1p, throughput_4p, lock_uncontended,
//! lock_try, semaphore_uncontended, semaphore_try, lock_contended,
//! semaphore_contended, to_thread.

use std::process::ExitCode;

#[path = "../common/sync_cases.rs"]
mod cases;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let usage = || {
        eprintln!("usage: {} CASE trioxide|tokio ITERATIONS", args[0]);
        ExitCode::from(2)
    };
    let (Some(case), Some(runtime), Some(n)) = (args.get(1), args.get(2), args.get(3)) else {
        return usage();
    };
    let Ok(n) = n.parse::<u64>() else {
        return usage();
    };
    let total = match runtime.as_str() {
        "trioxide" => match case.as_str() {
            "pingpong_cap1" => cases::trioxide_pingpong(1, n),
            "pingpong_cap0" => cases::trioxide_pingpong(0, n),
            "throughput_1p" => cases::trioxide_throughput(1, n),
            "throughput_4p" => cases::trioxide_throughput(4, n),
            "lock_uncontended" => cases::trioxide_lock_uncontended(n),
            "lock_try" => cases::trioxide_lock_try(n),
            "semaphore_uncontended" => cases::trioxide_semaphore_uncontended(n),
            "semaphore_try" => cases::trioxide_semaphore_try(n),
            "lock_contended" => cases::trioxide_lock_contended(n),
            "semaphore_contended" => cases::trioxide_semaphore_contended(n),
            "to_thread" => cases::trioxide_to_thread(n),
            _ => return usage(),
        },
        "tokio" => {
            let rt = cases::tokio_rt();
            match case.as_str() {
                "pingpong_cap1" => cases::tokio_pingpong(&rt, n),
                "throughput_1p" => cases::tokio_throughput(&rt, 1, n),
                "throughput_4p" => cases::tokio_throughput(&rt, 4, n),
                "lock_uncontended" => cases::tokio_mutex_uncontended(&rt, n),
                "lock_try" => cases::tokio_mutex_try(&rt, n),
                "semaphore_uncontended" => cases::tokio_semaphore_uncontended(&rt, n),
                "semaphore_try" => cases::tokio_semaphore_try(&rt, n),
                "lock_contended" => cases::tokio_mutex_contended(&rt, n),
                "semaphore_contended" => cases::tokio_semaphore_contended(&rt, n),
                "to_thread" => cases::tokio_spawn_blocking(&rt, n),
                _ => return usage(),
            }
        }
        _ => return usage(),
    };
    println!("{case} {runtime} {n}: {:.1} ns/op", total.as_secs_f64() * 1e9 / n.max(1) as f64);
    ExitCode::SUCCESS
}
