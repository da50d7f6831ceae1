//! The "floor": the least a single-threaded executor can do. A slab of boxed
//! futures, a `Vec<usize>` run queue, and a waker that is just the task's
//! slab key and pushes it back on the queue. No timers, no I/O, no
//! cancellation, no de-duplication of wake-ups, no cross-thread wakes.
//!
//! Shared by `benches/scheduler.rs` and `benches/memory.rs`.

#![allow(dead_code)]

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use slab::Slab;

type BoxFuture = Pin<Box<dyn Future<Output = ()>>>;

struct Executor {
    tasks: RefCell<Slab<BoxFuture>>,
    runq: RefCell<Vec<usize>>,
}

thread_local! {
    static EX: Executor = const { Executor { tasks: RefCell::new(Slab::new()), runq: RefCell::new(Vec::new()) } };
}

const VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake, drop_waker);

fn clone(key: *const ()) -> RawWaker {
    RawWaker::new(key, &VTABLE)
}

fn wake(key: *const ()) {
    EX.with(|ex| ex.runq.borrow_mut().push(key as usize));
}

fn drop_waker(_: *const ()) {}

fn waker_for(key: usize) -> Waker {
    // SAFETY: the data pointer is only a number (the slab key); the vtable's
    // functions never dereference it, so any value satisfies its contract.
    unsafe { Waker::from_raw(RawWaker::new(key as *const (), &VTABLE)) }
}

/// Adds a task, runnable in the next pass.
pub fn spawn(fut: impl Future<Output = ()> + 'static) {
    EX.with(|ex| {
        let key = ex.tasks.borrow_mut().insert(Box::pin(fut));
        ex.runq.borrow_mut().push(key);
    });
}

/// Runs passes until the run queue is empty (every task finished or parked).
pub fn run() {
    EX.with(|ex| {
        let mut batch: Vec<usize> = Vec::new();
        loop {
            std::mem::swap(&mut *ex.runq.borrow_mut(), &mut batch);
            if batch.is_empty() {
                break;
            }
            for &key in &batch {
                let fut: *mut (dyn Future<Output = ()> + 'static) = match ex.tasks.borrow_mut().get_mut(key) {
                    // SAFETY: we never move the future out of its box.
                    Some(f) => unsafe { f.as_mut().get_unchecked_mut() },
                    None => continue,
                };
                let waker = waker_for(key);
                let mut cx = Context::from_waker(&waker);
                // SAFETY: the box stays in the slab (which may grow, but the
                // box's heap allocation does not move) until it is removed
                // below, after the poll; one poll at a time.
                let ready = unsafe { Pin::new_unchecked(&mut *fut) }.poll(&mut cx).is_ready();
                if ready {
                    let done = ex.tasks.borrow_mut().remove(key);
                    drop(done);
                }
            }
            batch.clear();
        }
    });
}

/// Drops every task still in the slab (parked ones).
pub fn clear() {
    EX.with(|ex| {
        let tasks = std::mem::take(&mut *ex.tasks.borrow_mut());
        drop(tasks);
        ex.runq.borrow_mut().clear();
    });
}

/// Returns `Pending` once after waking itself: one trip through the run queue.
pub fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

pub struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
