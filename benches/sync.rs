//! Synchronisation benchmarks (issue 4): memory channels, `Lock`,
//! `Semaphore` and `to_thread::run_sync`, each beside its tokio counterpart
//! on tokio's current-thread runtime (`new_current_thread().enable_all()`),
//! in the same criterion run. The workloads are in `common/sync_cases.rs`.
//!
//! Every benchmark uses `iter_custom`: one call runs `iters` operations in a
//! runtime that is already running and reports the time per operation, so
//! criterion's "time" is **per message / acquisition / call**. Building a
//! runtime is not timed (trioxide's `run` builds one per call; the tokio
//! runtime is built once per benchmark and reused by every call).
//!
//! Short times keep the whole run under about two minutes on the project's
//! 2-core VM: 0.3 s warm-up and 1.5 s measurement per benchmark, 100
//! samples (21 benchmarks). Results and how to read them: BENCHMARKS.md.
//!
//! Run: `cargo bench -p trioxide-bench --bench sync` (a subset: `cargo bench -p trioxide-bench --bench sync -- pingpong`).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};

#[path = "common/sync_cases.rs"]
mod cases;

use cases::tokio_rt;

fn config() -> Criterion {
    Criterion::default().warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_millis(1500))
}

fn bench_pingpong(c: &mut Criterion) {
    let mut g = c.benchmark_group("pingpong");
    g.bench_function("trioxide_cap1", |b| b.iter_custom(|iters| cases::trioxide_pingpong(1, iters)));
    g.bench_function("trioxide_cap0", |b| b.iter_custom(|iters| cases::trioxide_pingpong(0, iters)));
    let rt = tokio_rt();
    g.bench_function("tokio_mpsc1", |b| b.iter_custom(|iters| cases::tokio_pingpong(&rt, iters)));
    g.finish();
}

fn bench_throughput(c: &mut Criterion) {
    for producers in [1u64, 4] {
        let mut g = c.benchmark_group(format!("throughput_{producers}p"));
        g.bench_function("trioxide", |b| b.iter_custom(|iters| cases::trioxide_throughput(producers, iters)));
        let rt = tokio_rt();
        g.bench_function("tokio", |b| b.iter_custom(|iters| cases::tokio_throughput(&rt, producers, iters)));
        g.finish();
    }
}

fn bench_uncontended(c: &mut Criterion) {
    let mut g = c.benchmark_group("lock_uncontended");
    g.bench_function("trioxide", |b| b.iter_custom(cases::trioxide_lock_uncontended));
    g.bench_function("trioxide_try", |b| b.iter_custom(cases::trioxide_lock_try));
    let rt = tokio_rt();
    g.bench_function("tokio", |b| b.iter_custom(|iters| cases::tokio_mutex_uncontended(&rt, iters)));
    g.bench_function("tokio_try", |b| b.iter_custom(|iters| cases::tokio_mutex_try(&rt, iters)));
    g.finish();

    let mut g = c.benchmark_group("semaphore_uncontended");
    g.bench_function("trioxide", |b| b.iter_custom(cases::trioxide_semaphore_uncontended));
    g.bench_function("trioxide_try", |b| b.iter_custom(cases::trioxide_semaphore_try));
    g.bench_function("tokio", |b| b.iter_custom(|iters| cases::tokio_semaphore_uncontended(&rt, iters)));
    g.bench_function("tokio_try", |b| b.iter_custom(|iters| cases::tokio_semaphore_try(&rt, iters)));
    g.finish();
}

fn bench_contended(c: &mut Criterion) {
    let rt = tokio_rt();
    let mut g = c.benchmark_group("lock_contended");
    g.bench_function("trioxide", |b| b.iter_custom(cases::trioxide_lock_contended));
    g.bench_function("tokio", |b| b.iter_custom(|iters| cases::tokio_mutex_contended(&rt, iters)));
    g.finish();

    let mut g = c.benchmark_group("semaphore_contended");
    g.bench_function("trioxide", |b| b.iter_custom(cases::trioxide_semaphore_contended));
    g.bench_function("tokio", |b| b.iter_custom(|iters| cases::tokio_semaphore_contended(&rt, iters)));
    g.finish();
}

fn bench_to_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("to_thread");
    g.bench_function("trioxide_run_sync", |b| b.iter_custom(cases::trioxide_to_thread));
    let rt = tokio_rt();
    g.bench_function("tokio_spawn_blocking", |b| b.iter_custom(|iters| cases::tokio_spawn_blocking(&rt, iters)));
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_pingpong, bench_throughput, bench_uncontended, bench_contended, bench_to_thread
}
criterion_main!(benches);
