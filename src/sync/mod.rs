//! Synchronisation primitives for tasks of one run, all fair (FIFO) as in
//! Trio, every blocking call a checkpoint.
//!
//! * [`ParkingLot`]: the queue of waiting tasks the others are built on.

pub(crate) mod parking_lot;

pub use parking_lot::{Park, ParkError, ParkingLot};
