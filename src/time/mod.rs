//! Time as tasks see it: sleeping, timeouts and bare checkpoints.
//!
//! Everything here is a thin layer over the kernel's timer store
//! (`kernel/timers.rs`) and cancel-status tree (`kernel/cancel.rs`):
//! * `sleep.rs`: [`sleep`], [`sleep_until`], [`sleep_forever`],
//!   [`current_time`];
//! * `timeouts.rs`: [`move_on_after`] and friends, cancel scopes with a
//!   deadline;
//! * `checkpoint.rs`: [`checkpoint`] and the other explicit checkpoints.

pub(crate) mod checkpoint;
pub(crate) mod sleep;
pub(crate) mod timeouts;

pub use checkpoint::{cancel_shielded_checkpoint, checkpoint, checkpoint_if_cancelled, Checkpoint, ShieldedCheckpoint};
pub use sleep::{current_time, sleep, sleep_forever, sleep_until, Sleep, SleepForever};
pub use timeouts::{fail_after, fail_at, move_on_after, move_on_at, FailAfter, MoveOn};
