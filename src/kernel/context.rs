//! How code finds the run it is part of: a thread-local pointer to the
//! [`Core`], set by `run` for its whole duration.
//!
//! Trio keeps the runner in a thread-local too (`GLOBAL_RUN_CONTEXT`); a
//! pointer rather than an `Rc` keeps `Core::current()` one load and a null
//! check, which every checkpoint pays.

use std::cell::Cell;

use crate::kernel::task;
use crate::kernel::Core;

thread_local! {
    /// The runtime running on this thread, if any. Set by `run` for its
    /// whole duration (teardown included) and cleared after.
    static CONTEXT: Cell<*const Core> = const { Cell::new(std::ptr::null()) };
}

impl Core {
    /// The runtime of this thread.
    ///
    /// # Panics
    /// Outside [`run`](crate::run): every trioxide operation needs a
    /// running runtime. The message names the caller's line.
    #[inline]
    #[track_caller]
    pub(crate) fn current() -> &'static Core {
        match Core::try_current() {
            Some(core) => core,
            None => outside_run(),
        }
    }

    /// The runtime of this thread, for the public operation `op` (its
    /// path as a user writes it, e.g. `"trioxide::current_time"`): what a
    /// function that needs the runtime at once, not at its first poll,
    /// calls, so that the panic outside a run names that operation. With
    /// `#[track_caller]` on the path up to the public function, the panic
    /// points at the user's line. The name is used on the cold path only.
    ///
    /// # Panics
    /// Outside [`run`](crate::run).
    #[inline]
    #[track_caller]
    pub(crate) fn current_for(op: &'static str) -> &'static Core {
        match Core::try_current() {
            Some(core) => core,
            None => outside_run_op(op),
        }
    }

    /// The runtime of this thread, if one is running.
    #[inline]
    pub(crate) fn try_current() -> Option<&'static Core> {
        let ptr = CONTEXT.with(|c| c.get());
        // SAFETY: `run` sets CONTEXT to its boxed Core and clears it before
        // the box is dropped, so a non-null pointer is a live Core on this
        // thread. The `'static` lifetime is a white lie kept inside the crate:
        // no caller stores the reference beyond the call that got it.
        unsafe { ptr.as_ref() }
    }
}

#[cold]
#[inline(never)]
#[track_caller]
fn outside_run() -> ! {
    panic!("this trioxide operation must be called from inside trioxide::run (no runtime on this thread)")
}

#[cold]
#[inline(never)]
#[track_caller]
fn outside_run_op(op: &'static str) -> ! {
    panic!("{op} must be called from inside trioxide::run (no runtime on this thread)")
}

/// Installs the Core in CONTEXT; on drop (normal or unwinding) tears down
/// what is left while the Core is still reachable, then clears CONTEXT.
pub(super) struct ContextGuard<'a> {
    core: &'a Core,
}

impl<'a> ContextGuard<'a> {
    pub(super) fn enter(core: &'a Core) -> Self {
        CONTEXT.with(|c| c.set(core as *const Core));
        ContextGuard { core }
    }
}

impl Drop for ContextGuard<'_> {
    fn drop(&mut self) {
        // Drop the futures of tasks still alive (only after a panic) on this
        // thread, while their destructors can still reach the runtime.
        let keys: Vec<usize> = self.core.tasks.borrow().iter().map(|(k, _)| k).collect();
        for k in keys {
            if let Some(h) = self.core.header(k) {
                // SAFETY: runtime thread, no task is being polled any more,
                // and the slab entry keeps the task alive.
                unsafe { h.drop_future() };
            }
        }
        // A destructor above may have spawned a task: `release` drops the
        // future of any that is left.
        let tasks = std::mem::take(&mut *self.core.tasks.borrow_mut());
        self.core.owned_names.borrow_mut().clear();
        for (_, t) in tasks {
            // SAFETY: runtime thread; the task left the slab (taken above),
            // whose entry held the count we give back.
            unsafe { task::release(t) };
        }
        // Run-scoped state of the layers above goes while the run can still
        // be reached from its destructors.
        self.core.run_locals.clear();
        // Jobs sent from other threads from now on are refused; those
        // queued but not run are dropped here, which tells their threads
        // the run is over (`from_thread`).
        drop(self.core.shared.close_jobs());
        CONTEXT.with(|c| c.set(std::ptr::null()));
    }
}
