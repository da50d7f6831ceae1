//! Nurseries: tasks that belong to a parent, and `start` (a child that
//! reports readiness before it is handed to its nursery).
//!
//! * `open.rs`: [`open_nursery`], [`Nursery`], how children's outcomes are
//!   gathered into one [`MultiError`](crate::MultiError);
//! * `start.rs`: [`Nursery::start`] and [`TaskStatus`]: the child runs under
//!   the caller's cancel status until `started(value)`, then is re-parented
//!   into the nursery.
//!
//! The two files know each other (a started child is a nursery child with
//! a different link); that cycle stays inside this folder.

pub(crate) mod open;
pub(crate) mod start;

pub use open::{open_nursery, Nursery, OpenNursery, TaskOutput};
pub(crate) use open::{ChildLink, ChildTask, NurseryInner, Outcome};
pub use start::{Start, TaskStatus};
