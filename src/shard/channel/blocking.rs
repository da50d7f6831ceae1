//! Waiting without a run: the blocking operations of plain threads.
//!
//! A thread blocked in `send_blocking` or `receive_blocking` queues a waiter
//! as a task would, with a waker that unparks the thread, and parks until
//! the waiter's outcome is decided. The waker is made once per thread.

use std::sync::Arc;
use std::task::{Wake, Waker};

use crate::kernel::sync_shim::{current, thread_local, Thread};
use crate::kernel::Core;

/// Unparks one thread.
struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

thread_local! {
    static THREAD_WAKER: Waker = Waker::from(Arc::new(ThreadWaker(current())));
}

/// The waker that unparks the calling thread.
pub(super) fn thread_waker() -> Waker {
    THREAD_WAKER.with(Waker::clone)
}

/// Panics if the calling thread is running a trioxide run: blocking it
/// would stop every task of that run, including the one that could unblock it.
#[track_caller]
pub(super) fn assert_outside_run(op: &'static str) {
    if Core::try_current().is_some() {
        inside_run(op);
    }
}

#[cold]
#[inline(never)]
#[track_caller]
fn inside_run(op: &'static str) -> ! {
    panic!("{op} blocks its thread, so it cannot be called inside a trioxide run: await the async operation instead")
}
