//! # trioxide
//!
//! Structured concurrency for Rust in the model of Python's
//! [Trio](https://trio.readthedocs.io): tasks live in **nurseries**, are
//! stopped by **cancel scopes**, and run on a fast single-threaded scheduler
//! of our own over `mio`.
//!
//! * [`run`] starts the runtime and returns the main future's output.
//! * [`open_nursery`] runs a body and children concurrently and returns only
//!   when all are done, with every error ([`MultiError`]).
//! * [`CancelScope`], [`move_on_after`], [`fail_after`] cancel what runs
//!   inside them. Cancellation is *level-triggered* and delivered at
//!   *checkpoints* (every operation that can block) as `Err(`[`Cancelled`]`)`,
//!   which you propagate with `?`; the scope that was cancelled catches it.
//!
//! ```
//! use std::time::Duration;
//! use trioxide::{run, open_nursery, move_on_after, sleep, BoxError, Cancelled};
//!
//! let out = run(open_nursery(|nursery| async move {
//!     nursery.start_soon(async {
//!         sleep(Duration::from_millis(5)).await?;
//!         Ok::<_, BoxError>(())
//!     })?;
//!     // Give up on a slow operation after 10 ms.
//!     let r = move_on_after(Duration::from_millis(10), async {
//!         sleep(Duration::from_secs(60)).await?;
//!         Ok::<_, Cancelled>("never")
//!     }).await?;
//!     assert_eq!(r, None);
//!     Ok::<_, BoxError>("done")
//! }));
//! assert_eq!(out.unwrap(), Some("done"));
//! ```
//!
//! See DESIGN.md for how it works and why.

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod channel;
mod kernel;
mod net;
mod nursery;
pub mod process;
pub mod signal;
mod stream;
pub mod sync;
pub mod testing;
mod thread;
mod time;

pub use channel::open_memory_channel;
pub use kernel::cancel::{CancelScope, Scoped};
pub use kernel::clock::{secs_f64, Clock, Instant, MockClock, SystemClock};
pub use kernel::error::{
    io_error_kind, is_cancelled_error, BoxError, BrokenResource, BusyResource, Cancellation, Cancelled, ClosedResource,
    InvalidTime, IoErrorKind, MultiError, NurseryClosed, StartError, TooSlow, WouldBlock,
};
pub use kernel::idle::{wait_all_tasks_blocked, WaitAllTasksBlocked};
pub use kernel::instrument::{add_instrument, current_task, remove_instrument, task_tree, Instrument, TaskInfo};
pub use kernel::io::driver::{io_stats, IoStats};
pub use kernel::io::raw_fd::{notify_closing, wait_readable, wait_writable};
pub use kernel::rng::SEED_ENV;
pub use kernel::run::{run, Builder, RunReport};
pub use kernel::task::TaskId;
pub use net::connect::{happy_eyeballs, open_tcp_stream, HAPPY_EYEBALLS_DELAY};
pub use net::serve::{open_tcp_listeners, serve_listeners, serve_tcp, ACCEPT_RETRY_DELAY};
pub use net::tcp::{TcpListener, TcpStream, ACCEPT_BATCH};
pub use net::udp::UdpSocket;
pub use net::unix::{UnixListener, UnixStream};
pub use nursery::{open_nursery, Nursery, OpenNursery, Start, TaskOutput, TaskStatus};
pub use stream::stapled::StapledStream;
pub use stream::{HalfCloseableStream, Listener, ReceiveStream, Resource, SendEof, SendStream, Stream};
pub use sync::{CapacityLimiter, Condition, Event, Lock, Semaphore};
pub use thread::{from_thread, to_thread};
pub use time::{
    cancel_shielded_checkpoint, checkpoint, checkpoint_if_cancelled, current_time, fail_after, fail_at, move_on_after,
    move_on_at, sleep, sleep_forever, sleep_until, Checkpoint, FailAfter, ShieldedCheckpoint, Sleep, SleepForever,
};

/// The README's Rust examples, compiled and run as doc tests so they stay
/// true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
