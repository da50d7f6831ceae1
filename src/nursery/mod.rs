//! Nurseries: tasks that belong to a parent, and `start` (a child that
//! reports readiness before it is handed to its nursery).
//!
//! * `open.rs`: [`open_nursery`], [`Nursery`], how children's outcomes are
//!   gathered into one [`MultiError`](crate::MultiError);
//! * `start.rs`: [`Nursery::start`] and [`TaskStatus`]: the child runs under
//!   the caller's cancel status until `started(value)`, then is re-parented
//!   into the nursery;
//! * `remote.rs`: [`Nursery::start_soon_on`] and [`Nursery::start_on`],
//!   children on another shard (the protocol is in `shard/remote.rs`).
//!
//! The two files know each other (a started child is a nursery child with
//! a different link); that cycle stays inside this folder.

pub(crate) mod open;
mod remote;
pub(crate) mod start;

pub use open::{open_nursery, Nursery, OpenNursery, TaskOutput};
pub(crate) use open::{ChildLink, ChildTask, NurseryInner, Outcome};
pub use start::{Start, TaskStatus};

/// Where a task reports that it is ready: a [`TaskStatus`] when it runs
/// under [`Nursery::start`], or [`TASK_STATUS_IGNORED`] when it is awaited
/// or spawned directly (Trio's `TASK_STATUS_IGNORED`). Functions such as
/// [`serve_tcp`](crate::serve_tcp) take either.
///
/// ```
/// use trioxide::{Started, TASK_STATUS_IGNORED};
/// fn ready(status: impl Started<u16>) {
///     status.started(8000);
/// }
/// ready(TASK_STATUS_IGNORED); // nobody waits for the value
/// ```
pub trait Started<V> {
    /// Reports the task ready with `value`.
    ///
    /// ```
    /// use trioxide::{open_nursery, run, BoxError, Started};
    /// // A function that reports readiness works with start() and without it.
    /// async fn ready_after_setup(status: impl Started<&'static str>) -> Result<(), BoxError> {
    ///     status.started("set up"); // from here on the caller goes on
    ///     Ok(())
    /// }
    /// run(open_nursery(|n| async move {
    ///     assert_eq!(n.start(ready_after_setup).await?, "set up");
    ///     ready_after_setup(trioxide::TASK_STATUS_IGNORED).await?;
    ///     Ok::<_, BoxError>(())
    /// })).unwrap();
    /// ```
    fn started(self, value: V);
}

impl<V> Started<V> for TaskStatus<V> {
    fn started(self, value: V) {
        TaskStatus::started(self, value);
    }
}

/// A [`Started`] that drops the value: for calling a function that takes a
/// task status without [`Nursery::start`].
///
/// ```
/// use trioxide::{run, BoxError, Started, TaskStatusIgnored};
/// async fn serve_once(status: impl Started<u16>) -> Result<u16, BoxError> {
///     status.started(8080);
///     Ok(8080)
/// }
/// // Awaited directly: nobody waits for the started value.
/// assert_eq!(run(serve_once(TaskStatusIgnored)).unwrap(), 8080);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskStatusIgnored;

impl<V> Started<V> for TaskStatusIgnored {
    fn started(self, _value: V) {}
}

/// Trio's `TASK_STATUS_IGNORED`: pass it where a task status is expected
/// and nobody waits for the value.
///
/// ```no_run
/// use std::net::{IpAddr, Ipv4Addr};
/// use trioxide::{run, serve_tcp, TcpStream, TASK_STATUS_IGNORED};
/// run(serve_tcp(
///     |s: TcpStream| async move { s.send_all(b"hi").await },
///     8000,
///     Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
///     TASK_STATUS_IGNORED,
/// )).unwrap();
/// ```
pub const TASK_STATUS_IGNORED: TaskStatusIgnored = TaskStatusIgnored;
