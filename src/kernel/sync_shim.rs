//! The synchronisation primitives of the cross-thread handshakes: `std`'s
//! in every normal build, [loom](https://docs.rs/loom)'s under `--cfg loom`.
//!
//! The code that crosses threads (the parking handshake of `remote.rs`, the
//! cross-shard channel's lock, closed flags and thread parking) names its
//! `Mutex`, atomics, `Arc`, thread parking and spin hint through this
//! module, so that the loom models (`cargo test --lib loom` with
//! `RUSTFLAGS="--cfg loom"`, see DESIGN.md 18, "Model-checked handshakes")
//! run the code that ships, with every interleaving and every weak-memory
//! outcome loom can produce. In a normal build these are plain re-exports:
//! the same types and functions, at no cost.
//!
//! Only what the models need goes through here: the rest of the run is
//! single-threaded, and counters no model reads (the detached-allocation
//! count) stay on `std`.

#[cfg(not(loom))]
pub(crate) use std::{
    hint::spin_loop,
    sync::{
        atomic::{fence, AtomicBool},
        Arc, Mutex, MutexGuard,
    },
    thread::{current, park, Thread},
    thread_local,
};

#[cfg(loom)]
pub(crate) use loom::{
    hint::spin_loop,
    sync::{
        atomic::{fence, AtomicBool},
        Arc, Mutex, MutexGuard,
    },
    thread::{current, park, Thread},
    thread_local,
};

// The same in both builds (loom's locks return std's results).
pub(crate) use std::sync::{atomic::Ordering, TryLockError};

/// Runs a loom model: every interleaving of `f`'s threads, all of them
/// when `bound` is `None`, else those with at most `bound` preemptions
/// (`LOOM_MAX_PREEMPTIONS` overrides it for every model); then prints how
/// many executions that was and how long it took (`--nocapture` shows it;
/// DESIGN.md 18 quotes the figures).
#[cfg(all(test, loom))]
pub(crate) fn check_model(name: &str, bound: Option<usize>, f: impl Fn() + Sync + Send + 'static) {
    use std::sync::atomic::AtomicUsize;

    let runs = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let mut builder = loom::model::Builder::new();
    if std::env::var_os("LOOM_MAX_PREEMPTIONS").is_none() {
        builder.preemption_bound = bound;
    }
    let bound = builder.preemption_bound;
    let start = std::time::Instant::now();
    builder.check(move || {
        counted.fetch_add(1, Ordering::Relaxed);
        f();
    });
    let bound = bound.map_or("none".to_string(), |b| b.to_string());
    eprintln!(
        "loom model {name}: {} executions in {:.2?} (preemption bound: {bound})",
        runs.load(Ordering::Relaxed),
        start.elapsed()
    );
}

/// The preemption bound of the models with three threads and several
/// operations each, whose full exploration would take hours: 4 covers
/// every interleaving with up to four forced switches (seconds per model;
/// 5 takes about five times as long).
#[cfg(all(test, loom))]
pub(crate) const BOUNDED: Option<usize> = Some(4);
