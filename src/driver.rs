//! The I/O driver: one `mio::Poll` (epoll on Linux) per run.
//!
//! Today it carries the cross-thread `mio::Waker` and is where the scheduler
//! blocks while waiting for the next deadline; socket readiness (registered
//! once per fd, with cached readiness) builds on it in the I/O layer.

use std::io;
use std::time::Duration;

use mio::{Events, Poll, Token};

/// The token of the cross-thread waker. Sources use tokens below it.
pub(crate) const WAKER_TOKEN: Token = Token(usize::MAX);

/// Events fetched per `epoll_wait`. 1024 matches mio's examples and Trio's
/// default `max_events`-free loop fetches about as many; more ready fds than
/// this are picked up by the next wait, which comes at once.
const EVENTS_CAPACITY: usize = 1024;

pub(crate) struct Driver {
    poll: Poll,
    events: Events,
    /// Registered I/O sources. While zero, the scheduler never calls
    /// `epoll_wait` with a zero timeout: there is nothing it could report
    /// except remote wake-ups, which have their own flag.
    pub(crate) sources: usize,
}

impl Driver {
    pub(crate) fn new() -> io::Result<(Driver, mio::Waker)> {
        let poll = Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), WAKER_TOKEN)?;
        Ok((Driver { poll, events: Events::with_capacity(EVENTS_CAPACITY), sources: 0 }, waker))
    }

    /// Waits for readiness up to `timeout` (`None`: forever). Returns the
    /// number of events seen (the waker's included).
    pub(crate) fn wait(&mut self, timeout: Option<Duration>) -> usize {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            // A signal interrupted the wait: the loop simply goes round.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return 0,
            // epoll_wait only fails on programming errors (bad fd, bad
            // buffer); there is no way to go on without it.
            Err(e) => panic!("trioxide: epoll_wait failed: {e}"),
        }
        // The waker's event needs no handling: being woken is the point.
        self.events.iter().count()
    }
}
