//! The crate's guide is the README, included below so that the API
//! reference stands on its own: the two commands, the model in one page,
//! the everyday tools, the testing kit and the layout. DESIGN.md explains
//! how it works and why; RULES.md lists the Trio behaviours the tests pin.
//!
#![doc = include_str!("../README.md")]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms,
    clippy::undocumented_unsafe_blocks
)]
#![deny(unsafe_op_in_unsafe_fn)]
#![doc(test(attr(deny(warnings))))]

pub mod channel;
#[cfg(feature = "hyper")]
pub mod hyper;
mod kernel;
#[cfg(feature = "macros")]
#[doc(hidden)]
pub mod macro_support;
mod net;
mod nursery;
pub mod process;
mod shard;
pub mod signal;
pub mod sim;
mod stream;
pub mod sync;
pub mod testing;
mod thread;
mod time;
#[cfg(feature = "tracing")]
mod tracing_instrument;

/// Runs an `async fn main` on a trioxide runtime (feature `macros`).
///
/// `#[trioxide::main] async fn main() -> R { body }` expands to
/// `fn main() -> R { ::trioxide::Builder::new().run(async { body }) }`,
/// exactly the hand-written call: no boxing, no extra allocation. The
/// option `seed = N` adds `.seed(N)`. Errors at compile time: a `fn` that
/// is not `async`, arguments, generics, an unknown option, a bad value.
///
/// ```
/// #[trioxide::main(seed = 7)]
/// async fn main() -> Result<(), trioxide::BoxError> {
///     let t0 = trioxide::current_time();
///     trioxide::sleep(std::time::Duration::from_millis(1)).await?;
///     assert!(trioxide::current_time() > t0);
///     assert_eq!(trioxide::current_seed(), 7);
///     Ok(())
/// }
/// ```
#[cfg(feature = "macros")]
pub use trioxide_macros::main;

/// Turns an `async fn` into a `#[test]` run on a trioxide runtime
/// (feature `macros`).
///
/// Options: `seed = N` fixes the scheduler's seed (`Builder::seed`);
/// `clock = autojump` runs on a [`MockClock`] with autojump threshold zero,
/// so sleeps end at once and virtual time advances exactly; `clock = mock`
/// on a `MockClock` that stands still. Without `seed` the run takes its
/// seed from [`SEED_ENV`] or entropy, and a failing test (a panic or an
/// `Err`) first prints one line naming it, such as
/// `trioxide: this test ran with seed 1234; re-run with TRIOXIDE_SEED=1234`,
/// then fails as it would have.
///
/// ```
/// #[trioxide::test(seed = 7, clock = autojump)]
/// async fn an_hour_passes_at_once() -> Result<(), trioxide::BoxError> {
///     let t0 = trioxide::current_time();
///     trioxide::sleep(std::time::Duration::from_secs(3600)).await?;
///     assert_eq!(trioxide::current_time().saturating_duration_since(t0), std::time::Duration::from_secs(3600));
///     Ok(())
/// }
/// # fn main() {} // `cargo test` runs such a test; a doc test only expands it
/// ```
#[cfg(feature = "macros")]
pub use trioxide_macros::test;
#[cfg(feature = "rustls")]
pub mod tls;

pub use channel::open_memory_channel;
pub use kernel::cancel::{current_effective_deadline, CancelScope, Scoped};
pub use kernel::clock::{secs_f64, Clock, Instant, MockClock, SystemClock};
pub use kernel::error::{
    io_error_kind, is_cancelled_error, BoxError, BrokenResource, BusyResource, Cancellation, Cancelled, ClosedResource,
    InvalidTime, IoErrorKind, MultiError, NurseryClosed, StartError, TooSlow, WouldBlock,
};
pub use kernel::idle::{wait_all_tasks_blocked, WaitAllTasksBlocked};
pub use kernel::instrument::{add_instrument, current_task, remove_instrument, task_tree, Instrument, TaskInfo};
pub use kernel::io::driver::{io_stats, IoStats};
pub use kernel::io::raw_fd::{notify_closing, wait_readable, wait_writable};
pub use kernel::rng::{current_seed, SEED_ENV};
pub use kernel::run::{run, Builder, RunReport};
pub use kernel::scheduler::{ParseScheduleError, Schedule, PCT_STEPS};
pub use kernel::statistics::{current_statistics, IoStatistics, RunStatistics};
pub use kernel::task::TaskId;
pub use kernel::trace::{Trace, TraceEvent};
pub use net::connect::{happy_eyeballs, open_tcp_stream, HAPPY_EYEBALLS_DELAY};
pub use net::serve::{
    open_tcp_listeners, serve_listeners, serve_tcp, AbandonOnDrain, GracefulShutdown, IdleWaiter, LocalAddr, Server,
    ShutdownReport, ACCEPT_RETRY_DELAY,
};
pub use net::tcp::{TcpListener, TcpReceiveHalf, TcpSendHalf, TcpStream, ACCEPT_BATCH};
pub use net::udp::UdpSocket;
pub use net::unix::{UnixListener, UnixReceiveHalf, UnixSendHalf, UnixStream};
pub use nursery::{
    open_nursery, Nursery, OpenNursery, Start, Started, TaskOutput, TaskStatus, TaskStatusIgnored, TASK_STATUS_IGNORED,
};
pub use shard::channel as shard_channel;
pub use shard::channel::open_shard_channel;
pub use shard::{
    run_sharded, sharded_task_tree, Balance, RemoteError, RemoteParent, RemoteTaskStatus, Shard, ShardError,
    ShardReport, ShardState, ShardTask, ShardTasks, ShardedBuilder, ShardedListener, ShardedTaskTree,
};
pub use stream::buffered::{BufferedReceiveStream, FrameTooLong};
pub use stream::poll::{PollReceive, PollSend};
pub use stream::split::{split, ReceiveHalf, ReuniteError, SendHalf};
pub use stream::stapled::StapledStream;
pub use stream::{HalfCloseableStream, Listener, ReceiveStream, Resource, SendEof, SendStream, Stream};
pub use sync::{CapacityLimiter, Condition, Event, Lock, Semaphore};
pub use thread::{from_thread, to_thread};
pub use time::{
    cancel_shielded_checkpoint, checkpoint, checkpoint_if_cancelled, current_time, fail_after, fail_at, move_on_after,
    move_on_at, sleep, sleep_forever, sleep_until, Checkpoint, FailAfter, MoveOn, ShieldedCheckpoint, Sleep,
    SleepForever,
};
#[cfg(feature = "tracing")]
pub use tracing_instrument::TracingInstrument;
