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
pub use kernel::rng::SEED_ENV;
pub use kernel::run::{run, Builder, RunReport};
pub use kernel::statistics::{current_statistics, IoStatistics, RunStatistics};
pub use kernel::task::TaskId;
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
pub use stream::buffered::{BufferedReceiveStream, FrameTooLong};
pub use stream::split::{split, ReceiveHalf, ReuniteError, SendHalf};
pub use stream::poll::{PollReceive, PollSend};
pub use stream::stapled::StapledStream;
pub use stream::{HalfCloseableStream, Listener, ReceiveStream, Resource, SendEof, SendStream, Stream};
pub use sync::{CapacityLimiter, Condition, Event, Lock, Semaphore};
pub use thread::{from_thread, to_thread};
pub use time::{
    cancel_shielded_checkpoint, checkpoint, checkpoint_if_cancelled, current_time, fail_after, fail_at, move_on_after,
    move_on_at, sleep, sleep_forever, sleep_until, Checkpoint, FailAfter, MoveOn, ShieldedCheckpoint, Sleep,
    SleepForever,
};
