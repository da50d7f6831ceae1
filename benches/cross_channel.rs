//! Cross-thread channel throughput (issue 13, item 3): one producer on one
//! thread, one consumer on another, `N` `u64` messages through a channel of
//! capacity 1024 and an unbounded one, for
//!
//! * `trioxide`: trioxide's cross-shard channel between the two shards of
//!   `run_sharded(2, ..)` (async `send`/`receive`);
//! * `trioxide-try`: the same, but the producer calls `try_send` and
//!   awaits `send` only when that would block (tokio's unbounded `send` is
//!   synchronous too: no checkpoint, no schedule point);
//! * `trioxide-blocking`: the same channel between two plain threads
//!   (`send_blocking`/`receive_blocking`);
//! * `tokio-mpsc`: `tokio::sync::mpsc` between two current-thread tokio
//!   runtimes on two threads (tokio's analogue of two shards);
//! * `flume-async`: flume's async ends between two trioxide shards (the
//!   same runtimes as `trioxide`, only the channel differs);
//! * `flume-blocking`: flume between two plain threads.
//!
//! Each case runs `RUNS` times; the table shows the median rate (messages
//! per second), the cost per message (1 / rate), the ratio to tokio mpsc of
//! the same capacity, and the context switches per message (voluntary and
//! involuntary, from `getrusage` over the whole process): a thread that
//! blocks (an `epoll_wait` or a futex wait that sleeps) costs one, so it
//! counts the wake-ups that needed a syscall and a reschedule.
//!
//! The clock starts when both sides have passed a barrier (runtimes built,
//! threads started) and stops when the consumer has received the last
//! message.
//!
//! Run: `nice -n 5 cargo bench -p trioxide-bench --bench cross_channel`.
//! Options after `--`: `CASE[,CASE..]` runs only those cases (by exact
//! name); `--cap 1024|unbounded` one capacity; `--n N` messages per run
//! (default 1,000,000); `--runs R` (default 5).

use std::sync::{Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use trioxide::channel::{ReceiveError, TrySendError, UNBOUNDED};
use trioxide::{open_shard_channel, run_sharded, BoxError};

/// The bounded capacity.
const CAP: usize = 1024;

/// Context switches of the whole process so far (voluntary + involuntary).
fn context_switches() -> u64 {
    // SAFETY: getrusage writes into the zeroed struct we pass; RUSAGE_SELF is valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `ru` outlives the call.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0;
    }
    (ru.ru_nvcsw + ru.ru_nivcsw) as u64
}

/// When the producer started and when the consumer finished; the sum
/// received, to check it.
struct Timing {
    start: Mutex<Option<Instant>>,
    end: Mutex<Option<(Instant, u64)>>,
}

impl Timing {
    fn new() -> Timing {
        Timing { start: Mutex::new(None), end: Mutex::new(None) }
    }

    fn started(&self) {
        *self.start.lock().unwrap() = Some(Instant::now());
    }

    fn finished(&self, sum: u64) {
        *self.end.lock().unwrap() = Some((Instant::now(), sum));
    }

    fn elapsed(&self, n: u64) -> Duration {
        let start = self.start.lock().unwrap().expect("the producer started");
        let (end, sum) = self.end.lock().unwrap().expect("the consumer finished");
        assert_eq!(sum, n * (n - 1) / 2, "every message arrived once");
        end.saturating_duration_since(start)
    }
}

/// Runs `producer` on shard 0 and `consumer` on shard 1 of a sharded run,
/// after both passed a barrier.
fn on_two_shards<P, C, PF, CF>(producer: P, consumer: C)
where
    P: FnOnce() -> PF + Send,
    C: FnOnce() -> CF + Send,
    PF: std::future::Future<Output = ()>,
    CF: std::future::Future<Output = ()>,
{
    let barrier = Barrier::new(2);
    let producer = Mutex::new(Some(producer));
    let consumer = Mutex::new(Some(consumer));
    run_sharded(2, |shard| {
        let p = if shard.index() == 0 { producer.lock().unwrap().take() } else { None };
        let c = if shard.index() == 1 { consumer.lock().unwrap().take() } else { None };
        let barrier = &barrier;
        async move {
            barrier.wait();
            if let Some(p) = p {
                p().await;
            } else if let Some(c) = c {
                c().await;
            }
            Ok::<_, BoxError>(())
        }
    })
    .unwrap();
}

fn trioxide_shards(cap: usize, n: u64) -> Duration {
    let (tx, rx) = open_shard_channel::<u64>(cap);
    let t = Timing::new();
    on_two_shards(
        || async {
            t.started();
            for i in 0..n {
                tx.send(i).await.unwrap();
            }
            drop(tx);
        },
        || async {
            let mut sum = 0;
            loop {
                match rx.receive().await {
                    Ok(v) => sum += v,
                    Err(ReceiveError::EndOfChannel) => break,
                    Err(e) => panic!("{e}"),
                }
            }
            t.finished(sum);
        },
    );
    t.elapsed(n)
}

fn trioxide_try(cap: usize, n: u64) -> Duration {
    let (tx, rx) = open_shard_channel::<u64>(cap);
    let t = Timing::new();
    on_two_shards(
        || async {
            t.started();
            for i in 0..n {
                if let Err(TrySendError::WouldBlock(v)) = tx.try_send(i) {
                    tx.send(v).await.unwrap();
                }
            }
            drop(tx);
        },
        || async {
            let mut sum = 0;
            while let Ok(v) = rx.receive().await {
                sum += v;
            }
            t.finished(sum);
        },
    );
    t.elapsed(n)
}

fn trioxide_blocking(cap: usize, n: u64) -> Duration {
    let (tx, rx) = open_shard_channel::<u64>(cap);
    let t = Timing::new();
    let barrier = Barrier::new(2);
    thread::scope(|s| {
        s.spawn(|| {
            barrier.wait();
            t.started();
            for i in 0..n {
                tx.send_blocking(i).unwrap();
            }
            drop(tx);
        });
        s.spawn(|| {
            barrier.wait();
            let mut sum = 0;
            while let Ok(v) = rx.receive_blocking() {
                sum += v;
            }
            t.finished(sum);
        });
    });
    t.elapsed(n)
}

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().build().unwrap()
}

fn tokio_mpsc(cap: usize, n: u64) -> Duration {
    let t = Timing::new();
    let barrier = Barrier::new(2);
    if cap == UNBOUNDED {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        thread::scope(|s| {
            s.spawn(|| {
                tokio_rt().block_on(async {
                    barrier.wait();
                    t.started();
                    for i in 0..n {
                        tx.send(i).unwrap();
                    }
                    drop(tx);
                })
            });
            s.spawn(|| {
                tokio_rt().block_on(async {
                    barrier.wait();
                    let mut sum = 0;
                    while let Some(v) = rx.recv().await {
                        sum += v;
                    }
                    t.finished(sum);
                })
            });
        });
    } else {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(cap);
        thread::scope(|s| {
            s.spawn(|| {
                tokio_rt().block_on(async {
                    barrier.wait();
                    t.started();
                    for i in 0..n {
                        tx.send(i).await.unwrap();
                    }
                    drop(tx);
                })
            });
            s.spawn(|| {
                tokio_rt().block_on(async {
                    barrier.wait();
                    let mut sum = 0;
                    while let Some(v) = rx.recv().await {
                        sum += v;
                    }
                    t.finished(sum);
                })
            });
        });
    }
    t.elapsed(n)
}

fn flume_channel(cap: usize) -> (flume::Sender<u64>, flume::Receiver<u64>) {
    if cap == UNBOUNDED {
        flume::unbounded()
    } else {
        flume::bounded(cap)
    }
}

fn flume_async(cap: usize, n: u64) -> Duration {
    let (tx, rx) = flume_channel(cap);
    let t = Timing::new();
    on_two_shards(
        || async {
            t.started();
            for i in 0..n {
                tx.send_async(i).await.unwrap();
            }
            drop(tx);
        },
        || async {
            let mut sum = 0;
            while let Ok(v) = rx.recv_async().await {
                sum += v;
            }
            t.finished(sum);
        },
    );
    t.elapsed(n)
}

fn flume_blocking(cap: usize, n: u64) -> Duration {
    let (tx, rx) = flume_channel(cap);
    let t = Timing::new();
    let barrier = Barrier::new(2);
    thread::scope(|s| {
        s.spawn(|| {
            barrier.wait();
            t.started();
            for i in 0..n {
                tx.send(i).unwrap();
            }
            drop(tx);
        });
        s.spawn(|| {
            barrier.wait();
            let mut sum = 0;
            while let Ok(v) = rx.recv() {
                sum += v;
            }
            t.finished(sum);
        });
    });
    t.elapsed(n)
}

type Case = (&'static str, fn(usize, u64) -> Duration);

const CASES: &[Case] = &[
    // First: the others' ratios are to it.
    ("tokio-mpsc", tokio_mpsc),
    ("trioxide", trioxide_shards),
    ("trioxide-try", trioxide_try),
    ("flume-async", flume_async),
    ("trioxide-blocking", trioxide_blocking),
    ("flume-blocking", flume_blocking),
];

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut n, mut runs, mut filter) = (1_000_000u64, 5usize, None::<String>);
    let mut caps = vec![CAP, UNBOUNDED];
    while let Some(a) = args.next() {
        match a.as_str() {
            "--n" => n = args.next().and_then(|v| v.parse().ok()).expect("--n takes a number"),
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).expect("--runs takes a number"),
            "--cap" => {
                let v = args.next().expect("--cap takes a capacity or `unbounded`");
                caps = vec![if v == "unbounded" { UNBOUNDED } else { v.parse().expect("--cap takes a number") }];
            }
            // What cargo bench passes.
            "--bench" => {}
            other if other.starts_with('-') => {}
            other => filter = Some(other.to_string()),
        }
    }
    println!("{n} u64 messages, one producer thread, one consumer thread; median of {runs} runs");
    println!(
        "{:<18} {:>9} {:>14} {:>10} {:>10} {:>12}",
        "case", "capacity", "messages/s", "ns/msg", "vs tokio", "ctxsw/msg"
    );
    for cap in caps {
        let mut tokio_rate = None;
        for &(name, case) in CASES {
            if filter.as_deref().is_some_and(|f| !f.split(',').any(|f| f == name)) {
                continue;
            }
            let mut samples: Vec<(f64, f64)> = (0..runs)
                .map(|_| {
                    let cs = context_switches();
                    let d = case(cap, n);
                    let switched = context_switches().saturating_sub(cs);
                    (n as f64 / d.as_secs_f64(), switched as f64 / n as f64)
                })
                .collect();
            samples.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (rate, ctxsw) = samples[samples.len() / 2];
            if name == "tokio-mpsc" {
                tokio_rate = Some(rate);
            }
            let ratio = tokio_rate.map_or("-".to_string(), |t| format!("{:.2}x", rate / t));
            let cap_s = if cap == UNBOUNDED { "unbounded".to_string() } else { cap.to_string() };
            println!("{name:<18} {cap_s:>9} {rate:>14.0} {:>10.1} {ratio:>10} {ctxsw:>12.5}", 1e9 / rate);
        }
    }
}
