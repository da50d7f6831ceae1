//! The kernel: trioxide's `_core`. Everything that touches run state, and
//! nothing else.
//!
//! | file | what it owns |
//! |---|---|
//! | `core.rs` | [`Core`]: the run's state, each field with its invariant; the `pub(crate)` API the layers above use |
//! | `context.rs` | the thread-local pointer that finds the running `Core` |
//! | `run.rs` | [`run`](crate::run), [`Builder`](crate::Builder), [`RunReport`](crate::RunReport) |
//! | `scheduler.rs` | the scheduler pass: Trio's batches, reverse-or-not, the exploring strategies ([`Schedule`](crate::Schedule)), when to poll I/O, idling |
//! | `task.rs` | a task's allocation, its header and waker, [`TaskId`](crate::TaskId) |
//! | `remote.rs` | what other threads touch: remote wake-ups, jobs, the parking handshake |
//! | `cancel.rs` | the cancel-status tree and [`CancelScope`](crate::CancelScope) |
//! | `timers.rs` | the timer store: deadlines of sleeps and scopes |
//! | `clock.rs` | [`Instant`](crate::Instant), the system and mock clocks |
//! | `rng.rs` | the seedable random source of the pass |
//! | `trace.rs` | the opt-in run trace and its hash ([`Trace`](crate::Trace)) |
//! | `budget.rs` | the one cooperative budget of I/O, channels and sync |
//! | `instrument.rs` | instruments and the task tree |
//! | `idle.rs` | [`wait_all_tasks_blocked`](crate::wait_all_tasks_blocked) |
//! | `statistics.rs` | [`current_statistics`](crate::current_statistics): tasks, deadlines, I/O waits |
//! | `parking_lot.rs` | [`ParkingLot`](parking_lot::ParkingLot) and lot breakers |
//! | `run_local.rs` | run-local slots for the layers above (Trio's `RunVar`) |
//! | `error.rs` | the errors the kernel reports ([`Cancelled`](crate::Cancelled), ...) |
//! | `sync_shim.rs` | the primitives of the cross-thread handshakes: `std`'s, or loom's under `--cfg loom` |
//! | `sys.rs` | the `syscall!` helper for `libc` calls |
//! | `io/` | the I/O driver, the readiness cache, raw-fd waits |
//!
//! # The rule
//! The kernel names nothing above it: no file under `src/kernel/` uses a
//! path into `time`, `nursery`, `sync`, `channel`, `stream`, `net`,
//! `process`, `signal`, `thread` or `testing` (`.ci/layering.sh` checks it).
//! What a layer above needs per run, it keeps in a [`RunVar`](run_local::RunVar).
//!
//! Inside the kernel, files do use each other in a cycle (the pass calls
//! the cancel tree, which wakes tasks through the pass's queue; the budget
//! reads the pass's queue; parking lots are broken by task exit). Trio's
//! `_core` is the same: `_run.py` is the integrator, and splitting it
//! further would only move the cycle into callbacks that cost a virtual
//! call on the hot path. The one-way rule is between the kernel and the
//! rest, where it buys something: the layers above can be read, changed
//! and replaced without touching run state.

pub(crate) mod budget;
pub(crate) mod cancel;
pub(crate) mod clock;
mod context;
mod core;
pub(crate) mod error;
pub(crate) mod idle;
pub(crate) mod instrument;
pub(crate) mod io;
pub(crate) mod parking_lot;
pub(crate) mod remote;
pub(crate) mod rng;
pub(crate) mod run;
pub(crate) mod run_local;
pub(crate) mod scheduler;
pub(crate) mod statistics;
pub(crate) mod sync_shim;
pub(crate) mod sys;
pub(crate) mod task;
pub(crate) mod timers;
pub(crate) mod trace;

pub(crate) use self::core::Core;
