//! The I/O half of the kernel.
//!
//! * `driver.rs`: the [`Driver`](driver::Driver): one `mio::Poll`, the
//!   registration slab, and turning epoll events into readiness bits;
//! * `readiness.rs`: the readiness cache of one fd ([`IoState`](readiness::IoState)),
//!   the wait-for-readiness loop every socket operation runs, and
//!   [`Source`](readiness::Source), an owned fd with its cache;
//! * `raw_fd.rs`: waits on fds the caller owns ([`wait_readable`](crate::wait_readable)).

pub(crate) mod driver;
pub(crate) mod raw_fd;
pub(crate) mod readiness;
