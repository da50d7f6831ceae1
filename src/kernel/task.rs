//! One task's allocation and its waker.
//!
//! A task is a single `Arc<Task<F>>`: a small [`Header`] followed by the
//! future itself, so spawning costs one allocation. The same allocation is
//! the waker's data pointer (as in `async-task`), so cloning a waker is one
//! atomic increment and waking needs no lookup.
//!
//! Waking has two paths:
//! * on the runtime's own thread (the common case) the task id is pushed onto
//!   the run queue directly;
//! * from any other thread it goes through [`Shared`]: a mutex-protected
//!   queue, plus a `mio::Waker` poke if the runtime is blocked in the I/O
//!   wait.
//!
//! Either way a task woken twice before it runs appears once in the queue
//! (rule S4). Two flags make that cheap: `scheduled`, read and written only
//! by the runtime thread (plain loads and stores, no atomic read-modify-write
//! on the hot path), and `remote_scheduled`, swapped by other threads so
//! that each task sits in the remote queue at most once.

use std::cell::UnsafeCell;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use crate::kernel::remote::Shared;
use crate::kernel::Core;

/// Identifies a task for the lifetime of a run: its slot in the task slab and
/// that slot's generation, so an old id never names a newer task.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(u64);

impl TaskId {
    /// No task (outside any task step).
    pub(crate) const NONE: TaskId = TaskId(u64::MAX);

    pub(crate) fn new(key: usize, gen: u32) -> TaskId {
        debug_assert!(key < u32::MAX as usize);
        TaskId((gen as u64) << 32 | key as u64)
    }

    pub(crate) fn key(self) -> usize {
        (self.0 & 0xFFFF_FFFF) as usize
    }

    pub(crate) fn gen(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// A number unique among the tasks of one run, for logs.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl std::fmt::Debug for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TaskId({}#{})", self.key(), self.gen())
    }
}

/// The fixed-size front of every task allocation.
#[repr(C)]
pub(crate) struct Header {
    pub(crate) id: TaskId,
    /// True from the moment the task is queued until the step that runs it
    /// begins. Only the runtime thread touches it (an atomic only so that the
    /// header is `Sync`; every access is a relaxed load or store).
    pub(crate) scheduled: AtomicBool,
    /// True while the task sits in `Shared::remote`; swapped by remote
    /// wakers (Release) and by the runtime when it drains (Acquire), so what
    /// the waking thread wrote is visible to the task's next poll.
    pub(crate) remote_scheduled: AtomicBool,
    pub(crate) shared: Arc<Shared>,
}

impl Header {
    /// Schedules the task from the runtime's own thread. No other thread
    /// writes `scheduled`, so a plain load and store suffice.
    #[inline]
    pub(crate) fn schedule_local(&self, core: &Core) {
        if !self.scheduled.load(Ordering::Relaxed) {
            self.scheduled.store(true, Ordering::Relaxed);
            core.push_runnable(self.id);
        }
    }

    /// Schedules the task from any thread.
    #[inline]
    pub(crate) fn wake(&self) {
        if let Some(core) = Core::try_current() {
            if Arc::ptr_eq(&core.shared, &self.shared) {
                self.schedule_local(core);
                return;
            }
        }
        if !self.remote_scheduled.swap(true, Ordering::AcqRel) {
            self.shared.push_remote(self.id);
        }
    }
}

/// A task's allocation: header first (so a waker can read it without knowing
/// `F`), then the future, which is dropped as soon as it completes.
#[repr(C)]
pub(crate) struct Task<F> {
    header: Header,
    future: UnsafeCell<Option<F>>,
}

/// What the scheduler needs of a task, whatever its future's type.
pub(crate) trait RawTask {
    fn header(&self) -> &Header;

    /// Polls the future once; true when it has completed (and been dropped).
    ///
    /// # Safety
    /// Only the runtime thread may call this, never re-entrantly for the same
    /// task, and only while the runtime holds its `Arc` to the task.
    unsafe fn poll_task(&self) -> bool;

    /// Drops the future if it has not completed (runtime teardown).
    ///
    /// # Safety
    /// As for `poll_task`.
    unsafe fn drop_future(&self);
}

impl<F: Future<Output = ()> + 'static> Task<F> {
    const VTABLE: RawWakerVTable =
        RawWakerVTable::new(Self::waker_clone, Self::waker_wake, Self::waker_wake_by_ref, Self::waker_drop);

    pub(crate) fn allocate(id: TaskId, shared: &Arc<Shared>, future: F) -> Arc<Task<F>> {
        shared.live_allocations.fetch_add(1, Ordering::Relaxed);
        Arc::new(Task {
            header: Header {
                id,
                scheduled: AtomicBool::new(true),
                remote_scheduled: AtomicBool::new(false),
                shared: shared.clone(),
            },
            future: UnsafeCell::new(Some(future)),
        })
    }

    // SAFETY (all four): `ptr` is always `Arc::as_ptr` of an `Arc<Task<F>>`
    // that is kept alive by the waker being operated on (one strong count
    // per live `Waker`), because wakers are only made by `poll_task` (from
    // the runtime's own count, wrapped in ManuallyDrop so it is never
    // released) and by `waker_clone` (which takes a count of its own).
    unsafe fn waker_clone(ptr: *const ()) -> RawWaker {
        // SAFETY: see above; the count we add is released by `waker_drop`.
        unsafe { Arc::increment_strong_count(ptr as *const Task<F>) };
        RawWaker::new(ptr, &Self::VTABLE)
    }

    unsafe fn waker_wake(ptr: *const ()) {
        // SAFETY: see above; this consumes the waker's own count.
        unsafe {
            Self::waker_wake_by_ref(ptr);
            Self::waker_drop(ptr);
        }
    }

    unsafe fn waker_wake_by_ref(ptr: *const ()) {
        // SAFETY: see above; `Header` is the first field of a `repr(C)`
        // struct, so the pointer to the task is a pointer to its header, and
        // the header is only read through atomics and `Arc`s, which are Sync.
        let header = unsafe { &*(ptr as *const Header) };
        header.wake();
    }

    unsafe fn waker_drop(ptr: *const ()) {
        // SAFETY: see above; releases the waker's own count. If it is the
        // last, the allocation is freed here, possibly on another thread.
        // That is sound although `F` need not be `Send`: the runtime holds
        // a count until the future has completed or been torn down, and it
        // drops the future (sets it to `None`) on its own thread first, so
        // no `F` is ever dropped or touched elsewhere.
        unsafe { drop(Arc::from_raw(ptr as *const Task<F>)) };
    }
}

impl<F: Future<Output = ()> + 'static> RawTask for Task<F> {
    fn header(&self) -> &Header {
        &self.header
    }

    unsafe fn poll_task(&self) -> bool {
        let ptr = self as *const Task<F> as *const ();
        // SAFETY: `self` lives inside an `Arc<Task<F>>` held by the runtime
        // for the whole step, so `ptr` satisfies the vtable's contract. The
        // waker is ManuallyDrop: it borrows that count instead of owning one.
        let waker = ManuallyDrop::new(unsafe { Waker::from_raw(RawWaker::new(ptr, &Self::VTABLE)) });
        let mut cx = Context::from_waker(&waker);
        // SAFETY: the caller guarantees we are on the runtime thread and not
        // re-entrant, so this is the only access to the cell right now. The
        // future is never moved out of the Arc allocation, so pinning holds.
        let slot = unsafe { &mut *self.future.get() };
        let done = match slot.as_mut() {
            // SAFETY: the future stays in place inside the task allocation
            // until it is dropped there (set to `None`), so it is pinned.
            Some(fut) => unsafe { Pin::new_unchecked(fut) }.poll(&mut cx).is_ready(),
            None => return true,
        };
        if done {
            *slot = None;
        }
        done
    }

    unsafe fn drop_future(&self) {
        // SAFETY: as in `poll_task`, this is the only access to the cell.
        unsafe { *self.future.get() = None };
    }
}

impl<F> Drop for Task<F> {
    fn drop(&mut self) {
        self.header.shared.live_allocations.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The main future is polled from `run`'s own stack frame (it need not be
/// `'static`), but it still needs a task allocation to make wakers from.
pub(crate) struct MainTask;

impl Future for MainTask {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

/// A waker for the main task, from its placeholder allocation.
pub(crate) fn main_waker(task: &Arc<Task<MainTask>>) -> Waker {
    let ptr = Arc::into_raw(task.clone()) as *const ();
    // SAFETY: `ptr` comes from `Arc::into_raw`, whose count this waker owns
    // and `waker_drop` releases: the vtable's contract.
    unsafe { Waker::from_raw(RawWaker::new(ptr, &Task::<MainTask>::VTABLE)) }
}
