//! The workloads of `benches/sync.rs` (issue 4), one trioxide function and
//! one tokio function per case, shared with the standalone driver
//! `benches/drivers/sync.rs` (run under `perf` or `valgrind --tool=callgrind`).
//!
//! Every function runs `iters` operations inside a runtime that is already
//! running and returns the time they took, which criterion's `iter_custom`
//! divides by `iters`: its "time" is a time **per operation** (per message,
//! per acquisition, per call). A ping-pong iteration is one round trip, two
//! messages, so it returns half its time. Building the runtime is not timed;
//! spawning the few tasks a case needs is, but that is a few hundred
//! nanoseconds against thousands of operations.
//!
//! The tokio side always runs inside a spawned task (`tokio::spawn`), not
//! in the `block_on` future itself: tokio's current-thread scheduler polls
//! the `block_on` future only between batches of spawned tasks (or after
//! parking), which would make its figures worse for a reason nobody meets
//! in a spawned-task program. trioxide's main task is an ordinary task.

#![allow(dead_code)]

use std::future::Future;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use trioxide::sync::{Lock, Semaphore};
use trioxide::{checkpoint, open_memory_channel, open_nursery, run, BoxError};

/// The buffer of the throughput cases. 128 holds enough messages that a
/// producer rarely finds it full, so the figure is the cost of moving a
/// message (and of the task switches each runtime chooses to make), not of
/// blocking on every send. It is also tokio's coop budget, so tokio's
/// producer can fill the whole buffer in one poll.
pub const THROUGHPUT_CAPACITY: usize = 128;

/// Tasks looping on the lock or semaphore in the contended cases.
pub const CONTENDERS: u64 = 4;

/// Permits of the contended semaphore: fewer than the contenders, so that
/// half of them wait at any time.
pub const CONTENDED_PERMITS: usize = 2;

/// Part `i` of `total` split as evenly as possible into `parts`.
fn share(total: u64, parts: u64, i: u64) -> u64 {
    total / parts + u64::from(i < total % parts)
}

/// The tokio runtime every tokio case runs on.
pub fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime")
}

/// Runs `fut` as a spawned task on `rt` and returns its output.
fn in_tokio_task<F>(rt: &tokio::runtime::Runtime, fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    rt.block_on(async move { tokio::spawn(fut).await.expect("tokio task panicked") })
}

// ---------------------------------------------------------------------------
// 1. Ping-pong between two tasks: time per message (a round trip is two).

/// The main task sends `i` on one channel, an echo task sends it back on a
/// second one; `iters` round trips.
pub fn trioxide_pingpong(capacity: usize, iters: u64) -> Duration {
    run(async move {
        let (to_echo, from_main) = open_memory_channel::<u64>(capacity);
        let (to_main, from_echo) = open_memory_channel::<u64>(capacity);
        let out = open_nursery(|n| async move {
            n.start_soon(async move {
                while let Ok(v) = from_main.receive().await {
                    to_main.send(v).await?;
                }
                Ok::<_, BoxError>(())
            })?;
            let t = Instant::now();
            for i in 0..iters {
                to_echo.send(i).await?;
                black_box(from_echo.receive().await?);
            }
            let elapsed = t.elapsed();
            // Dropping the send handle ends the echo task's loop.
            drop(to_echo);
            Ok::<_, BoxError>(elapsed)
        })
        .await;
        out.expect("ping-pong failed").expect("not cancelled") / 2
    })
}

/// The same with `tokio::sync::mpsc::channel(1)` (tokio has no rendezvous
/// channel: `channel(0)` panics).
pub fn tokio_pingpong(rt: &tokio::runtime::Runtime, iters: u64) -> Duration {
    in_tokio_task(rt, async move {
        let (to_echo, mut from_main) = tokio::sync::mpsc::channel::<u64>(1);
        let (to_main, mut from_echo) = tokio::sync::mpsc::channel::<u64>(1);
        let echo = tokio::spawn(async move {
            while let Some(v) = from_main.recv().await {
                if to_main.send(v).await.is_err() {
                    break;
                }
            }
        });
        let t = Instant::now();
        for i in 0..iters {
            to_echo.send(i).await.expect("echo task gone");
            black_box(from_echo.recv().await.expect("echo task gone"));
        }
        let elapsed = t.elapsed();
        drop(to_echo);
        echo.await.expect("echo task panicked");
        elapsed / 2
    })
}

// ---------------------------------------------------------------------------
// 2. Bounded-channel throughput: `producers` tasks send `iters` messages in
//    all to one consumer; time per message.

pub fn trioxide_throughput(producers: u64, iters: u64) -> Duration {
    run(async move {
        let (tx, rx) = open_memory_channel::<u64>(THROUGHPUT_CAPACITY);
        let t = Instant::now();
        let out = open_nursery(|n| async move {
            for p in 0..producers {
                let tx = tx.clone();
                n.start_soon(async move {
                    for i in 0..share(iters, producers, p) {
                        tx.send(i).await?;
                    }
                    Ok::<_, BoxError>(())
                })?;
            }
            // The producers' clones are the only open send handles now: the
            // consumer sees the end of the channel after the last message.
            drop(tx);
            let mut got = 0u64;
            while let Ok(v) = rx.receive().await {
                black_box(v);
                got += 1;
            }
            Ok::<_, BoxError>(got)
        })
        .await;
        let elapsed = t.elapsed();
        assert_eq!(out.expect("throughput failed"), Some(iters), "lost messages");
        elapsed
    })
}

pub fn tokio_throughput(rt: &tokio::runtime::Runtime, producers: u64, iters: u64) -> Duration {
    in_tokio_task(rt, async move {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(THROUGHPUT_CAPACITY);
        let t = Instant::now();
        for p in 0..producers {
            let tx = tx.clone();
            tokio::spawn(async move {
                for i in 0..share(iters, producers, p) {
                    tx.send(i).await.expect("consumer gone");
                }
            });
        }
        drop(tx);
        let mut got = 0u64;
        while let Some(v) = rx.recv().await {
            black_box(v);
            got += 1;
        }
        let elapsed = t.elapsed();
        assert_eq!(got, iters, "lost messages");
        elapsed
    })
}

// ---------------------------------------------------------------------------
// 3. Uncontended acquire + release in one task: time per pair.

pub fn trioxide_lock_uncontended(iters: u64) -> Duration {
    run(async move {
        let lock = Lock::new();
        let t = Instant::now();
        for _ in 0..iters {
            let guard = lock.acquire().await.expect("acquire failed");
            black_box(&guard);
            drop(guard);
        }
        t.elapsed()
    })
}

/// `Lock::try_acquire`: no checkpoint. Shows what the checkpoint costs.
pub fn trioxide_lock_try(iters: u64) -> Duration {
    run(async move {
        let lock = Lock::new();
        let t = Instant::now();
        for _ in 0..iters {
            let guard = lock.try_acquire().expect("lock busy");
            black_box(&guard);
            drop(guard);
        }
        t.elapsed()
    })
}

pub fn tokio_mutex_uncontended(rt: &tokio::runtime::Runtime, iters: u64) -> Duration {
    in_tokio_task(rt, async move {
        let mutex = tokio::sync::Mutex::new(());
        let t = Instant::now();
        for _ in 0..iters {
            let guard = mutex.lock().await;
            black_box(&guard);
            drop(guard);
        }
        t.elapsed()
    })
}

pub fn tokio_mutex_try(rt: &tokio::runtime::Runtime, iters: u64) -> Duration {
    in_tokio_task(rt, async move {
        let mutex = tokio::sync::Mutex::new(());
        let t = Instant::now();
        for _ in 0..iters {
            let guard = mutex.try_lock().expect("mutex busy");
            black_box(&guard);
            drop(guard);
        }
        t.elapsed()
    })
}

pub fn trioxide_semaphore_uncontended(iters: u64) -> Duration {
    run(async move {
        let sem = Semaphore::new(1);
        let t = Instant::now();
        for _ in 0..iters {
            let permit = sem.acquire().await.expect("acquire failed");
            black_box(&permit);
            drop(permit);
        }
        t.elapsed()
    })
}

pub fn trioxide_semaphore_try(iters: u64) -> Duration {
    run(async move {
        let sem = Semaphore::new(1);
        let t = Instant::now();
        for _ in 0..iters {
            let permit = sem.try_acquire().expect("no unit");
            black_box(&permit);
            drop(permit);
        }
        t.elapsed()
    })
}

pub fn tokio_semaphore_uncontended(rt: &tokio::runtime::Runtime, iters: u64) -> Duration {
    in_tokio_task(rt, async move {
        let sem = tokio::sync::Semaphore::new(1);
        let t = Instant::now();
        for _ in 0..iters {
            let permit = sem.acquire().await.expect("semaphore closed");
            black_box(&permit);
            drop(permit);
        }
        t.elapsed()
    })
}

pub fn tokio_semaphore_try(rt: &tokio::runtime::Runtime, iters: u64) -> Duration {
    in_tokio_task(rt, async move {
        let sem = tokio::sync::Semaphore::new(1);
        let t = Instant::now();
        for _ in 0..iters {
            let permit = sem.try_acquire().expect("no permit");
            black_box(&permit);
            drop(permit);
        }
        t.elapsed()
    })
}

// ---------------------------------------------------------------------------
// 4. Contended: CONTENDERS tasks each loop {acquire; yield while holding;
//    release}, `iters` acquisitions in all; time per acquisition.

pub fn trioxide_lock_contended(iters: u64) -> Duration {
    run(async move {
        let lock = std::rc::Rc::new(Lock::new());
        let t = Instant::now();
        let out = open_nursery(|n| async move {
            for c in 0..CONTENDERS {
                let lock = lock.clone();
                n.start_soon(async move {
                    for _ in 0..share(iters, CONTENDERS, c) {
                        let _guard = lock.acquire().await?;
                        checkpoint().await?;
                    }
                    Ok::<_, BoxError>(())
                })?;
            }
            Ok::<_, BoxError>(())
        })
        .await;
        let elapsed = t.elapsed();
        out.expect("contended lock failed");
        elapsed
    })
}

pub fn tokio_mutex_contended(rt: &tokio::runtime::Runtime, iters: u64) -> Duration {
    in_tokio_task(rt, async move {
        let mutex = Arc::new(tokio::sync::Mutex::new(()));
        let t = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..CONTENDERS {
            let mutex = mutex.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..share(iters, CONTENDERS, c) {
                    let _guard = mutex.lock().await;
                    tokio::task::yield_now().await;
                }
            }));
        }
        for task in tasks {
            task.await.expect("contender panicked");
        }
        t.elapsed()
    })
}

pub fn trioxide_semaphore_contended(iters: u64) -> Duration {
    run(async move {
        let sem = std::rc::Rc::new(Semaphore::new(CONTENDED_PERMITS));
        let t = Instant::now();
        let out = open_nursery(|n| async move {
            for c in 0..CONTENDERS {
                let sem = sem.clone();
                n.start_soon(async move {
                    for _ in 0..share(iters, CONTENDERS, c) {
                        let _permit = sem.acquire().await?;
                        checkpoint().await?;
                    }
                    Ok::<_, BoxError>(())
                })?;
            }
            Ok::<_, BoxError>(())
        })
        .await;
        let elapsed = t.elapsed();
        out.expect("contended semaphore failed");
        elapsed
    })
}

pub fn tokio_semaphore_contended(rt: &tokio::runtime::Runtime, iters: u64) -> Duration {
    in_tokio_task(rt, async move {
        let sem = Arc::new(tokio::sync::Semaphore::new(CONTENDED_PERMITS));
        let t = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..CONTENDERS {
            let sem = sem.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..share(iters, CONTENDERS, c) {
                    let _permit = sem.acquire().await.expect("semaphore closed");
                    tokio::task::yield_now().await;
                }
            }));
        }
        for task in tasks {
            task.await.expect("contender panicked");
        }
        t.elapsed()
    })
}

// ---------------------------------------------------------------------------
// 5. A trivial closure on a worker thread and back, sequential calls; time
//    per call. One untimed call first, so the worker thread exists.

pub fn trioxide_to_thread(iters: u64) -> Duration {
    run(async move {
        trioxide::to_thread::run_sync(|| ()).await.expect("run_sync failed");
        let t = Instant::now();
        for i in 0..iters {
            let v = trioxide::to_thread::run_sync(move || black_box(i)).await.expect("run_sync failed");
            black_box(v);
        }
        t.elapsed()
    })
}

pub fn tokio_spawn_blocking(rt: &tokio::runtime::Runtime, iters: u64) -> Duration {
    in_tokio_task(rt, async move {
        tokio::task::spawn_blocking(|| ()).await.expect("spawn_blocking failed");
        let t = Instant::now();
        for i in 0..iters {
            let v = tokio::task::spawn_blocking(move || black_box(i)).await.expect("spawn_blocking failed");
            black_box(v);
        }
        t.elapsed()
    })
}
