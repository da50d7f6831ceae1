//! Tools for testing code written with trioxide, modelled on Trio's
//! `trio.testing`.
//!
//! * [`wait_all_tasks_blocked`]: let every other task settle, then assert.
//! * In-memory streams: [`memory_stream_pair`] (an unbounded buffer, like a
//!   socket pair without the kernel) and [`lockstep_stream_pair`] (no
//!   buffer at all: each send waits for the receiver), with their one-way
//!   versions; a two-way end is the two one-way halves in a
//!   [`StapledStream`](crate::StapledStream). They follow the socket rules: every operation is a
//!   checkpoint, concurrent use of one direction is
//!   [`BusyResource`](crate::BusyResource), closing wakes waiters with
//!   [`ClosedResource`](crate::ClosedResource), a cancelled receive loses
//!   nothing.
//! * Conformance checks for your own stream types:
//!   [`check_one_way_stream`], [`check_two_way_stream`],
//!   [`check_half_closeable_stream`].
//! * [`assert_checkpoints`] and [`assert_no_checkpoints`]: check that an
//!   operation is (or is not) a checkpoint.
//! * [`Sequencer`]: make code in different tasks run in a fixed order.
//!
//! ```
//! use trioxide::run;
//! use trioxide::testing::{check_half_closeable_stream, memory_stream_pair};
//!
//! run(async {
//!     check_half_closeable_stream(|| async { Ok(memory_stream_pair()) }, None).await
//! }).unwrap();
//! ```

mod check_streams;
mod checkpoints;
mod direction;
mod halves;
mod lockstep;
mod memory_stream;
mod sequencer;

pub use crate::kernel::idle::{wait_all_tasks_blocked, WaitAllTasksBlocked};
pub use check_streams::{check_half_closeable_stream, check_one_way_stream, check_two_way_stream, CheckFailed};
pub use checkpoints::{assert_checkpoints, assert_no_checkpoints, AssertCheckpoints};
pub use lockstep::{
    lockstep_stream_one_way_pair, lockstep_stream_pair, LockstepReceiveStream, LockstepSendStream, LockstepStream,
};
pub use memory_stream::{
    memory_stream_one_way_pair, memory_stream_pair, memory_stream_pump, HookFuture, MemoryReceiveStream,
    MemorySendStream, MemoryStream,
};
pub use sequencer::{Sequencer, SequencerError, SequencerTurn};
