//! Scheduler benchmarks: trioxide beside tokio's current-thread runtime and
//! a bare "floor" executor (`common/floor.rs`), in the same run.
//!
//! Every benchmark uses `iter_custom` and divides the measured time by the
//! number of operations, so criterion's "time" is **per operation** (per
//! task, per switch, per step, per scope...), not per batch. Only the work
//! inside the runtime is timed: building and tearing down the runtime is not.
//!
//! Run: `cargo bench -p trioxide-bench --bench scheduler`. Results: BENCHMARKS.md.

use std::future::Future;
use std::hint::black_box;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, SamplingMode};
use trioxide::{
    checkpoint, checkpoint_if_cancelled, move_on_after, open_nursery, run, BoxError, CancelScope, Cancelled,
};

#[path = "common/floor.rs"]
mod floor;

/// `total` spread over the `ops` operations of one iteration (criterion then
/// divides by the iteration count itself).
fn per(total: Duration, ops: u64) -> Duration {
    Duration::from_secs_f64(total.as_secs_f64() / ops as f64)
}

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().build().expect("tokio runtime")
}

fn config() -> Criterion {
    Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500))
}

/// Big batches (tens of ms or more per iteration): few samples, each of the
/// same iteration count.
fn heavy(g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    g.sample_size(10).sampling_mode(SamplingMode::Flat);
}

// ---------------------------------------------------------------------------
// 1. spawn + join of a no-op task, per task.

fn trioxide_spawn(n: u64, iters: u64) -> Duration {
    run(async move {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let t = Instant::now();
            let r = open_nursery(|nursery| async move {
                for _ in 0..n {
                    nursery.start_soon(async {})?;
                }
                Ok::<_, BoxError>(())
            })
            .await;
            total += t.elapsed();
            r.expect("nursery failed");
        }
        total
    })
}

fn tokio_spawn(n: u64, iters: u64) -> Duration {
    tokio_rt().block_on(async move {
        let mut handles = Vec::with_capacity(n as usize);
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let t = Instant::now();
            for _ in 0..n {
                handles.push(tokio::spawn(async {}));
            }
            for h in handles.drain(..) {
                h.await.expect("task failed");
            }
            total += t.elapsed();
        }
        total
    })
}

fn tokio_local_spawn(n: u64, iters: u64) -> Duration {
    let rt = tokio_rt();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let mut handles = Vec::with_capacity(n as usize);
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let t = Instant::now();
            for _ in 0..n {
                handles.push(tokio::task::spawn_local(async {}));
            }
            for h in handles.drain(..) {
                h.await.expect("task failed");
            }
            total += t.elapsed();
        }
        total
    })
}

fn floor_spawn(n: u64, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let t = Instant::now();
        floor::spawn(async move {
            for _ in 0..n {
                floor::spawn(async {});
            }
        });
        floor::run();
        total += t.elapsed();
    }
    total
}

fn bench_spawn(c: &mut Criterion) {
    for (name, n) in [("spawn_join_10k", 10_000u64), ("spawn_join_1M", 1_000_000)] {
        let mut g = c.benchmark_group(name);
        if n >= 1_000_000 {
            heavy(&mut g);
        }
        g.bench_function("trioxide", |b| b.iter_custom(|iters| per(trioxide_spawn(n, iters), n)));
        g.bench_function("tokio", |b| b.iter_custom(|iters| per(tokio_spawn(n, iters), n)));
        g.bench_function("tokio_localset", |b| b.iter_custom(|iters| per(tokio_local_spawn(n, iters), n)));
        g.bench_function("floor", |b| b.iter_custom(|iters| per(floor_spawn(n, iters), n)));
        g.finish();
    }
}

// ---------------------------------------------------------------------------
// 2. and 3. tasks yielding in a loop: per task step.

/// `tasks` tasks each yielding `k` times; returns the total time.
fn trioxide_yielders(tasks: u64, k: u64, iters: u64) -> Duration {
    run(async move {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let t = Instant::now();
            let r = open_nursery(|n| async move {
                for _ in 0..tasks {
                    n.start_soon(async move {
                        for _ in 0..k {
                            checkpoint().await?;
                        }
                        Ok::<_, Cancelled>(())
                    })?;
                }
                Ok::<_, BoxError>(())
            })
            .await;
            total += t.elapsed();
            r.expect("nursery failed");
        }
        total
    })
}

fn tokio_yielders(tasks: u64, k: u64, iters: u64) -> Duration {
    tokio_rt().block_on(async move {
        let mut total = Duration::ZERO;
        let mut handles = Vec::with_capacity(tasks as usize);
        for _ in 0..iters {
            let t = Instant::now();
            for _ in 0..tasks {
                handles.push(tokio::spawn(async move {
                    for _ in 0..k {
                        tokio::task::yield_now().await;
                    }
                }));
            }
            for h in handles.drain(..) {
                h.await.expect("task failed");
            }
            total += t.elapsed();
        }
        total
    })
}

fn floor_yielders(tasks: u64, k: u64, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let t = Instant::now();
        for _ in 0..tasks {
            floor::spawn(async move {
                for _ in 0..k {
                    floor::yield_now().await;
                }
            });
        }
        floor::run();
        total += t.elapsed();
    }
    total
}

fn bench_switch(c: &mut Criterion) {
    const K: u64 = 10_000;
    let mut g = c.benchmark_group("switch_2_tasks");
    g.bench_function("trioxide", |b| b.iter_custom(|iters| per(trioxide_yielders(2, K, iters), 2 * K)));
    g.bench_function("tokio", |b| b.iter_custom(|iters| per(tokio_yielders(2, K, iters), 2 * K)));
    g.bench_function("floor", |b| b.iter_custom(|iters| per(floor_yielders(2, K, iters), 2 * K)));
    g.finish();
}

fn bench_step(c: &mut Criterion) {
    const TASKS: u64 = 1_000;
    const K: u64 = 1_000;
    let mut g = c.benchmark_group("step_1000x1000");
    heavy(&mut g);
    g.bench_function("trioxide", |b| b.iter_custom(|iters| per(trioxide_yielders(TASKS, K, iters), TASKS * K)));
    g.bench_function("tokio", |b| b.iter_custom(|iters| per(tokio_yielders(TASKS, K, iters), TASKS * K)));
    g.bench_function("floor", |b| b.iter_custom(|iters| per(floor_yielders(TASKS, K, iters), TASKS * K)));
    g.finish();
}

// ---------------------------------------------------------------------------
// 4. cancel scope enter + exit, per scope.

fn bench_cancel_scope(c: &mut Criterion) {
    let mut g = c.benchmark_group("cancel_scope_enter_exit");
    g.bench_function("trioxide", |b| {
        b.iter_custom(|iters| {
            run(async move {
                let t = Instant::now();
                for _ in 0..iters {
                    let r = CancelScope::new().run(async { Ok::<_, Cancelled>(()) }).await;
                    black_box(r).expect("scope failed");
                }
                t.elapsed()
            })
        })
    });
    // With a deadline: the closer match for tokio's timeout. Both read the
    // clock at entry and neither registers a timer when the body is ready at
    // the first poll (trioxide's timeout then makes no scope node either).
    g.bench_function("trioxide_move_on_after", |b| {
        b.iter_custom(|iters| {
            run(async move {
                let t = Instant::now();
                for _ in 0..iters {
                    let r = move_on_after(Duration::from_secs(3600), async { Ok::<_, Cancelled>(()) }).await;
                    black_box(r).expect("scope failed");
                }
                t.elapsed()
            })
        })
    });
    g.bench_function("tokio_timeout", |b| {
        b.iter_custom(|iters| {
            tokio_rt().block_on(async move {
                let t = Instant::now();
                for _ in 0..iters {
                    let r = tokio::time::timeout(Duration::from_secs(3600), async {}).await;
                    black_box(r).expect("timed out");
                }
                t.elapsed()
            })
        })
    });
    g.finish();
}

// ---------------------------------------------------------------------------
// 5. a checkpoint under 1 and under 100 nested cancel scopes, per checkpoint.

type LocalBoxFuture<T> = Pin<Box<dyn Future<Output = T>>>;

/// `depth` nested scopes around `body(k)`.
fn nest(depth: usize, k: u64, sync_check: bool) -> LocalBoxFuture<Result<(), Cancelled>> {
    Box::pin(async move {
        if depth == 0 {
            for _ in 0..k {
                if sync_check {
                    black_box(checkpoint_if_cancelled())?;
                } else {
                    checkpoint().await?;
                }
            }
            Ok(())
        } else {
            CancelScope::new().run(nest(depth - 1, k, sync_check)).await.map(|_| ())
        }
    })
}

fn trioxide_nested(depth: usize, iters: u64, sync_check: bool) -> Duration {
    run(async move {
        let fut = nest(depth, iters, sync_check);
        let t = Instant::now();
        fut.await.expect("cancelled");
        t.elapsed()
    })
}

fn bench_nested(c: &mut Criterion) {
    let mut g = c.benchmark_group("checkpoint_nested_scopes");
    for depth in [1usize, 100] {
        g.bench_function(format!("trioxide_checkpoint_depth{depth}"), |b| {
            b.iter_custom(|iters| trioxide_nested(depth, iters, false))
        });
    }
    for depth in [1usize, 100] {
        g.bench_function(format!("trioxide_checkpoint_if_cancelled_depth{depth}"), |b| {
            b.iter_custom(|iters| trioxide_nested(depth, iters, true))
        });
    }
    // Reference only: tokio has no cancel scopes. In a spawned task (in the
    // `block_on` future itself each yield also parks the driver, ~3x slower).
    g.bench_function("tokio_yield_now", |b| {
        b.iter_custom(|iters| {
            tokio_rt().block_on(async move {
                tokio::spawn(async move {
                    let t = Instant::now();
                    for _ in 0..iters {
                        tokio::task::yield_now().await;
                    }
                    t.elapsed()
                })
                .await
                .expect("task failed")
            })
        })
    });
    g.bench_function("floor_yield_now", |b| {
        b.iter_custom(|iters| {
            let out = std::rc::Rc::new(std::cell::Cell::new(Duration::ZERO));
            let o = out.clone();
            floor::spawn(async move {
                let t = Instant::now();
                for _ in 0..iters {
                    floor::yield_now().await;
                }
                o.set(t.elapsed());
            });
            floor::run();
            out.get()
        })
    });
    g.finish();
}

// ---------------------------------------------------------------------------
// 6. sleep timer set + cancel, per timer.

/// Polls `fut` once with the current task's context, whatever the result.
async fn poll_once<F: Future>(fut: Pin<&mut F>) {
    let mut fut = Some(fut);
    std::future::poll_fn(move |cx| {
        if let Some(f) = fut.take() {
            let _ = f.poll(cx);
        }
        Poll::Ready(())
    })
    .await
}

fn bench_timer(c: &mut Criterion) {
    let mut g = c.benchmark_group("sleep_set_cancel");
    g.bench_function("trioxide", |b| {
        b.iter_custom(|iters| {
            run(async move {
                let t = Instant::now();
                for _ in 0..iters {
                    let s = pin!(trioxide::sleep(Duration::from_secs(3600)));
                    poll_once(s).await;
                }
                t.elapsed()
            })
        })
    });
    g.bench_function("tokio", |b| {
        b.iter_custom(|iters| {
            tokio_rt().block_on(async move {
                let t = Instant::now();
                for _ in 0..iters {
                    let s = pin!(tokio::time::sleep(Duration::from_secs(3600)));
                    poll_once(s).await;
                }
                t.elapsed()
            })
        })
    });
    g.finish();
}

// ---------------------------------------------------------------------------
// 7. cross-thread wake round trip, per round trip.

const IDLE: u32 = 0;
const REQUESTED: u32 = 1;
const WOKEN: u32 = 2;
const STOP: u32 = 3;

/// The task registers its waker and sets REQUESTED; a spinning std thread
/// sees it, sets WOKEN and calls `wake()`; the task's next poll sees WOKEN.
#[derive(Default)]
struct Ping {
    state: AtomicU32,
    waker: Mutex<Option<Waker>>,
}

struct WaitWoken<'a> {
    ping: &'a Ping,
    registered: bool,
}

impl Future for WaitWoken<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.ping.state.load(Ordering::Acquire) == WOKEN {
            self.ping.state.store(IDLE, Ordering::Relaxed);
            return Poll::Ready(());
        }
        if !self.registered {
            self.registered = true;
            *self.ping.waker.lock().expect("poisoned") = Some(cx.waker().clone());
            self.ping.state.store(REQUESTED, Ordering::Release);
        }
        Poll::Pending
    }
}

/// Runs `body` with a waking thread alive beside it.
fn with_waker_thread<R>(body: impl FnOnce(Arc<Ping>) -> R) -> R {
    let ping = Arc::new(Ping::default());
    let p = ping.clone();
    let thread = std::thread::spawn(move || loop {
        match p.state.load(Ordering::Acquire) {
            REQUESTED => {
                let w = p.waker.lock().expect("poisoned").take().expect("no waker");
                p.state.store(WOKEN, Ordering::Release);
                w.wake();
            }
            STOP => return,
            _ => std::hint::spin_loop(),
        }
    });
    let out = body(ping.clone());
    ping.state.store(STOP, Ordering::Release);
    thread.join().expect("waker thread panicked");
    out
}

async fn round_trips(ping: &Ping, iters: u64) -> Duration {
    let t = Instant::now();
    for _ in 0..iters {
        WaitWoken { ping, registered: false }.await;
    }
    t.elapsed()
}

fn bench_cross_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("cross_thread_wake");
    g.bench_function("trioxide", |b| {
        b.iter_custom(|iters| with_waker_thread(|ping| run(async move { round_trips(&ping, iters).await })))
    });
    g.bench_function("tokio", |b| {
        b.iter_custom(|iters| {
            let rt = tokio_rt();
            with_waker_thread(|ping| rt.block_on(async move { round_trips(&ping, iters).await }))
        })
    });
    g.bench_function("tokio_spawned_task", |b| {
        b.iter_custom(|iters| {
            let rt = tokio_rt();
            with_waker_thread(|ping| {
                rt.block_on(async move {
                    tokio::spawn(async move { round_trips(&ping, iters).await }).await.expect("task failed")
                })
            })
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_spawn, bench_switch, bench_step, bench_cancel_scope, bench_nested, bench_timer, bench_cross_thread
}
criterion_main!(benches);
