//! A worker pipeline that uses the everyday tools together: a bounded
//! memory channel feeding workers, blocking work on threads through a
//! `CapacityLimiter`, a `Lock` around a shared report, an `Event` for "all
//! done", a subprocess, and Ctrl-C handled as a signal.
//!
//! Run it with `cargo run --example pipeline` (about a second; Ctrl-C
//! cancels it cleanly and it says so).

#[path = "common/args.rs"]
mod args;

use std::cell::RefCell;
use std::process::Command;
use std::rc::Rc;
use std::time::Duration;

use trioxide::channel::{ReceiveError, UNBOUNDED};
use trioxide::process::run_process;
use trioxide::signal::open_signal_receiver;
use trioxide::sync::{CapacityLimiter, Event, Lock};
use trioxide::{open_memory_channel, open_nursery, sleep, to_thread, BoxError};

/// Jobs the producer sends.
const JOBS: u64 = 12;
/// Tasks taking jobs from the channel.
const WORKERS: usize = 4;
/// Threads doing blocking work at once (fewer than the workers, so the
/// limiter visibly queues them).
const THREADS: usize = 2;

/// Blocking work: something a task must not do on the runtime thread.
fn crunch(job: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(40));
    (1..=job * 1000).map(|x| x * x % 7919).sum()
}

async fn pipeline() -> Result<(), BoxError> {
    let mut cmd = Command::new("uname");
    cmd.arg("-sr");
    let uname = run_process(cmd).await?;
    println!("running on {}", String::from_utf8_lossy(&uname.stdout).trim());

    let report = Rc::new(RefCell::new(Vec::new()));
    let report_lock = Rc::new(Lock::new());
    let finished = Rc::new(Event::new());
    let r = open_nursery(|n| {
        let (report, report_lock, finished) = (report.clone(), report_lock.clone(), finished.clone());
        async move {
            // Ctrl-C cancels the whole nursery: every task sees Cancelled at
            // its next checkpoint and unwinds.
            let signals = open_signal_receiver(&[libc::SIGINT])?;
            let everything = n.cancel_scope();
            n.start_soon_named("ctrl-c", async move {
                signals.receive().await?;
                println!("Ctrl-C: cancelling the pipeline");
                everything.cancel();
                Ok::<_, BoxError>(())
            })?;

            // A bounded channel: the producer waits when 4 jobs are queued.
            let (jobs_tx, jobs_rx) = open_memory_channel::<u64>(4);
            let (done_tx, done_rx) = open_memory_channel::<(usize, u64, u64)>(UNBOUNDED);
            n.start_soon_named("producer", async move {
                for job in 1..=JOBS {
                    jobs_tx.send(job).await?;
                }
                Ok::<_, BoxError>(()) // dropping jobs_tx closes the channel
            })?;

            let limiter = Rc::new(CapacityLimiter::new(THREADS));
            for worker in 0..WORKERS {
                let (jobs, done, limiter) = (jobs_rx.clone(), done_tx.clone(), limiter.clone());
                n.start_soon_named(format!("worker {worker}"), async move {
                    loop {
                        let job = match jobs.receive().await {
                            Ok(job) => job,
                            // Every sender closed and the buffer drained.
                            Err(ReceiveError::EndOfChannel) => break,
                            // Cancelled (or this handle closed): pass it up.
                            Err(e) => return Err(e.into()),
                        };
                        let value = to_thread::run_sync(move || crunch(job)).limiter(limiter.clone()).await?;
                        done.send((worker, job, value)).await?;
                    }
                    Ok::<_, BoxError>(())
                })?;
            }
            drop((jobs_rx, done_tx)); // the workers hold the only clones now

            let all_in = finished.clone();
            n.start_soon_named("collector", async move {
                let mut count = 0;
                loop {
                    match done_rx.receive().await {
                        Ok((worker, job, value)) => {
                            // The lock keeps this read-modify-write whole
                            // across the checkpoint in the middle.
                            let _guard = report_lock.acquire().await?;
                            let line = format!("job {job:>2} by worker {worker}: {value}");
                            sleep(Duration::from_millis(1)).await?;
                            report.borrow_mut().push(line);
                            count += 1;
                        }
                        Err(ReceiveError::EndOfChannel) => break,
                        Err(e) => return Err(e.into()),
                    }
                }
                println!("collected {count} results");
                all_in.set();
                Ok::<_, BoxError>(())
            })?;

            finished.wait().await?;
            // Done: stop the Ctrl-C task too.
            n.cancel_scope().cancel();
            Ok::<_, BoxError>(())
        }
    })
    .await?;
    if r.is_none() && !finished.is_set() {
        println!("cancelled after {} results", report.borrow().len());
        return Ok(());
    }
    let mut lines = report.borrow().clone();
    lines.sort();
    for line in lines {
        println!("{line}");
    }
    Ok(())
}

fn main() {
    args::Args::parse("pipeline", "A pipeline: channel, workers, threads, a lock, a subprocess, Ctrl-C.", &[]);
    if let Err(e) = trioxide::run(pipeline()) {
        eprintln!("pipeline failed: {e}");
        std::process::exit(1);
    }
}
