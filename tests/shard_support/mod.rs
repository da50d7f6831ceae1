//! Helpers shared by the sharded test binaries (`sharded`,
//! `sharded_remote`, `sharded_tree`): shards are threads, so every sharded
//! call runs on a helper thread and fails the test (instead of hanging) if
//! it takes longer than `SAFETY`; and a short form of the per-shard
//! leftovers.
//!
//! Not every binary uses every helper.
#![allow(dead_code)]

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use trioxide::ShardReport;

/// Far above any real latency; only there to turn a hang into a failure.
pub const SAFETY: Duration = Duration::from_secs(30);

/// Runs `f` on its own thread and returns its result, or fails the test if
/// it has not returned within `SAFETY`.
pub fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(SAFETY).expect("the sharded run hung (or its thread died)")
}

/// Each shard's tasks, timers and task allocations left at the end.
pub fn no_leftovers(reports: &[ShardReport]) -> Vec<(usize, usize, usize)> {
    reports.iter().map(|r| (r.run.tasks_left, r.run.timers_left, r.run.task_allocations_left)).collect()
}
