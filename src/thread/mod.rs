//! Threads: running blocking code off the runtime thread and calling back
//! into the run from other threads.
//!
//! * `to_thread.rs`: [`to_thread::run_sync`](crate::to_thread::run_sync),
//!   limited by a per-run [`CapacityLimiter`](crate::CapacityLimiter);
//! * `from_thread.rs`: [`RuntimeHandle`](crate::from_thread::RuntimeHandle)
//!   and the worker threads' way back in;
//! * `pool.rs`: the process-wide cache of worker threads.

pub mod from_thread;
pub(crate) mod pool;
pub mod to_thread;
