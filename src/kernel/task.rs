//! One task's allocation and its waker.
//!
//! A task is one heap allocation, `Task<F>`: a 48-byte [`Header`] followed by
//! the future, written in place (the caller of `Core::spawn_in_place` gets a
//! pointer into the new allocation, so a large future is moved once, not
//! once per layer). The task slab holds a thin pointer to the header; the
//! header holds everything the pass needs (id, `scheduled`, the root cancel
//! status) and the task tree's data in compact form (the parent lives on
//! the root status node, a given name in a side table, what the task waits
//! on as an index into interned strings).
//!
//! The same allocation is the waker's data pointer (as in `async-task`), so
//! cloning a waker is one atomic increment and waking needs no lookup. One
//! non-generic waker vtable serves every task: the header's own `Vtable`
//! knows `F`.
//!
//! # Counts, and why a single-threaded run does no atomic read-modify-write
//! `refs` counts the wakers alive plus one for the runtime, which holds the
//! task from `spawn` until [`release`] (the step in which it completes, or
//! teardown). Creating a task stores 1 (no atomic operation). Releasing it
//! loads `refs`: 1 means no waker exists anywhere (none can appear without
//! one existing, or without the runtime polling), so the runtime frees the
//! allocation at once: no atomic read-modify-write on the whole spawn+join
//! path. Only if wakers remain does the runtime *detach* the task: it gives
//! it a strong count of [`Shared`] (which the header otherwise points to
//! without owning: while the runtime holds the task, the run and so its
//! `Shared` are alive), counts it in `Shared::detached_allocations`, and
//! drops its own count; whoever drops the last count frees the allocation,
//! the detached count and the `Shared` count, on whatever thread.
//! `RunReport::task_allocations_left` is the slab's length plus the
//! detached count.
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
//! by the runtime thread (a `Cell`), and `remote_scheduled`, swapped by other
//! threads so that each task sits in the remote queue at most once.

use std::cell::{Cell, RefCell, UnsafeCell};
use std::future::Future;
use std::marker::PhantomData;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::pin::Pin;
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::atomic::{fence, AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use crate::kernel::cancel::ScopeNode;
use crate::kernel::remote::Shared;
use crate::kernel::Core;

/// Identifies a task for the lifetime of a run: its slot in the task slab and
/// that slot's generation, so an old id never names a newer task.
///
/// ```
/// use trioxide::{current_task, open_nursery, run, BoxError};
/// run(open_nursery(|n| async move {
///     let parent = current_task().id;
///     n.start_soon(async move {
///         assert_ne!(current_task().id, parent); // ids tell tasks apart
///         Ok::<_, BoxError>(())
///     })?;
///     Ok::<_, BoxError>(())
/// })).unwrap();
/// ```
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
    ///
    /// ```
    /// trioxide::run(async {
    ///     let id = trioxide::current_task().id;
    ///     println!("task {} says hello", id.as_u64());
    ///     assert_eq!(id.as_u64(), trioxide::current_task().id.as_u64());
    /// });
    /// ```
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl std::fmt::Debug for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TaskId({}#{})", self.key(), self.gen())
    }
}

/// What the header needs to know of `F`: one static table per future type.
pub(crate) struct Vtable {
    /// Polls the future once; on completion drops it and returns true.
    poll: unsafe fn(NonNull<Header>, &mut Context<'_>) -> bool,
    /// Drops the future in place.
    drop_future: unsafe fn(NonNull<Header>),
    /// Frees the allocation (the future is already dropped).
    dealloc: unsafe fn(NonNull<Header>),
    /// The task's default name: the type of the future it was spawned with.
    pub(crate) type_name: fn() -> &'static str,
}

/// The fixed-size front of every task allocation: 48 bytes (a test below
/// keeps it so).
///
/// `refs`, `vtable`, `shared`, `id` and `remote_scheduled` may be read from
/// any thread holding a waker; every other field is touched only by the
/// runtime thread, and only while the runtime holds the task.
#[repr(C)]
pub(crate) struct Header {
    /// Wakers alive, plus one while the runtime holds the task.
    refs: AtomicU32,
    /// The task's name: [`NAME_OF_TYPE`] (its future's type, from the
    /// vtable), [`NAME_OWNED`] (in `Core::owned_names`), or an index into
    /// `Core::static_names`. Runtime thread only.
    pub(super) name: Cell<u16>,
    /// True from the moment the task is queued until the step that runs it
    /// begins. Runtime thread only.
    pub(crate) scheduled: Cell<bool>,
    /// True while the task sits in `Shared::remote`; swapped by remote
    /// wakers (Release) and by the runtime when it drains (Acquire), so what
    /// the waking thread wrote is visible to the task's next poll.
    pub(crate) remote_scheduled: AtomicBool,
    vtable: &'static Vtable,
    /// The run's `Shared`. Not an owning pointer while the runtime holds the
    /// task (the run, which owns an `Arc<Shared>`, outlives that); owns one
    /// strong count once the task is detached (see the module docs).
    shared: *const Shared,
    pub(crate) id: TaskId,
    /// The cancel status the task starts each step in (its nursery's scope,
    /// or its own root while being `start`ed); owns one `Rc` count, given
    /// back in [`release`].
    root: Cell<*const ScopeNode>,
    /// This task's index in `root`'s task list.
    pub(super) root_reg: Cell<u32>,
    /// Whether the future is still there (not completed nor torn down).
    future_live: Cell<bool>,
    /// What the task last blocked on: an index into `Core::waiting_names`
    /// (0 is "").
    pub(super) waiting_on: Cell<u8>,
}

/// `Header::name` of a task named after its future's type.
pub(super) const NAME_OF_TYPE: u16 = 0;
/// `Header::name` of a task whose name is in `Core::owned_names`.
pub(super) const NAME_OWNED: u16 = u16::MAX;

/// Distinct `&'static str`s, so a header can keep a small index instead of
/// a 16-byte reference. Repeated look-ups of one string (a server naming
/// every connection task alike) hit a one-entry cache: two compares.
pub(super) struct Interner {
    list: RefCell<Vec<&'static str>>,
    last: Cell<(&'static str, usize)>,
    /// Most entries kept; a linear search happens only on a cache miss.
    cap: usize,
}

impl Interner {
    /// An interner whose entry 0 is `first`.
    pub(super) fn new(first: &'static str, cap: usize) -> Interner {
        Interner { list: RefCell::new(vec![first]), last: Cell::new((first, 0)), cap }
    }

    /// `s`'s index, added if new; `None` if the table is full.
    #[inline]
    pub(super) fn index(&self, s: &'static str) -> Option<usize> {
        let (last, i) = self.last.get();
        if std::ptr::eq(last, s) {
            return Some(i);
        }
        self.index_slow(s)
    }

    #[inline(never)]
    fn index_slow(&self, s: &'static str) -> Option<usize> {
        let mut list = self.list.borrow_mut();
        let i = match list.iter().position(|n| *n == s) {
            Some(i) => i,
            None if list.len() < self.cap => {
                list.push(s);
                list.len() - 1
            }
            None => return None,
        };
        self.last.set((s, i));
        Some(i)
    }

    /// The string at `i` (which `index` returned).
    pub(super) fn get(&self, i: usize) -> &'static str {
        self.list.borrow().get(i).copied().unwrap_or("")
    }
}

// SAFETY: other threads reach a header only through a waker, and then touch
// only `refs`, `remote_scheduled` (atomics), and `vtable`, `shared` and `id`
// (written once before the task is published, never changed). The `Cell`
// fields are read and written only by the runtime thread (see each field).
// (`Interner` is not in the header.)
unsafe impl Sync for Header {}
// SAFETY: as for `Sync`: a header moved (as a pointer) to another thread is
// only used through the thread-safe fields there.
unsafe impl Send for Header {}

/// A task's allocation: header first (so a pointer to the task is a pointer
/// to its header), then the future, initialised by `spawn_in_place`.
#[repr(C)]
struct Task<F, N: ?Sized> {
    header: Header,
    future: UnsafeCell<MaybeUninit<F>>,
    _name: PhantomData<fn() -> *const N>,
}

impl Header {
    /// Schedules the task from the runtime's own thread.
    #[inline]
    pub(crate) fn schedule_local(&self, core: &Core) {
        if !self.scheduled.get() {
            self.scheduled.set(true);
            core.push_runnable(self.id);
        }
    }

    /// Schedules the task from any thread.
    #[inline]
    pub(crate) fn wake(&self) {
        if let Some(core) = Core::try_current() {
            if std::ptr::eq(Arc::as_ptr(&core.shared), self.shared) {
                self.schedule_local(core);
                return;
            }
        }
        if !self.remote_scheduled.swap(true, Ordering::AcqRel) {
            // SAFETY: the caller holds a waker, so the task is alive, and
            // `shared` with it (see the field).
            unsafe { &*self.shared }.push_remote(self.id);
        }
    }

    /// The root cancel status (runtime thread, while the runtime holds the
    /// task).
    #[inline]
    pub(crate) fn root_ptr(&self) -> *const ScopeNode {
        self.root.get()
    }

    /// The root cancel status, borrowed.
    pub(crate) fn root(&self) -> &ScopeNode {
        // SAFETY: `root` owns an `Rc` count until `release`, and the caller
        // holds the task (it reached the header through the slab).
        unsafe { &*self.root.get() }
    }

    /// Polls the future once; true when it has completed (and been dropped).
    ///
    /// # Safety
    /// Runtime thread only, never re-entrantly for the same task, and only
    /// while the runtime holds the task.
    #[inline]
    pub(crate) unsafe fn poll(&self) -> bool {
        if !self.future_live.get() {
            return true;
        }
        let ptr = NonNull::from(self);
        // SAFETY: the runtime's count keeps the allocation alive for the
        // whole poll; the waker borrows that count (ManuallyDrop: never
        // released), which satisfies WAKER_VTABLE's contract.
        let waker =
            ManuallyDrop::new(unsafe { Waker::from_raw(RawWaker::new(ptr.as_ptr() as *const (), &WAKER_VTABLE)) });
        let mut cx = Context::from_waker(&waker);
        // SAFETY: the caller's guarantees are `Vtable::poll`'s.
        let done = unsafe { (self.vtable.poll)(ptr, &mut cx) };
        if done {
            self.future_live.set(false);
        }
        done
    }

    /// Drops the future if it is still there (runtime teardown).
    ///
    /// # Safety
    /// As for `poll`.
    pub(crate) unsafe fn drop_future(&self) {
        if self.future_live.replace(false) {
            // SAFETY: the future is initialised (`future_live`), and the
            // caller guarantees exclusive access from the runtime thread.
            unsafe { (self.vtable.drop_future)(NonNull::from(self)) };
        }
    }

    /// The default name: the future's type.
    pub(crate) fn type_name(&self) -> &'static str {
        (self.vtable.type_name)()
    }
}

impl<F: Future<Output = ()> + 'static, N: ?Sized + 'static> Task<F, N> {
    const VTABLE: Vtable = Vtable {
        poll: Self::poll,
        drop_future: Self::drop_future,
        dealloc: Self::dealloc,
        type_name: std::any::type_name::<N>,
    };

    /// Allocates a task with an uninitialised future and returns it with a
    /// pointer to where the future goes. The caller must write the future
    /// before the task is polled, dropped or released.
    fn allocate(id: TaskId, shared: &Arc<Shared>, root: Rc<ScopeNode>) -> (NonNull<Header>, *mut F) {
        let mut task: Box<MaybeUninit<Task<F, N>>> = Box::new_uninit();
        let p = task.as_mut_ptr();
        // SAFETY: `p` points to the fresh allocation; we write the header
        // field by field without reading anything, and only compute the
        // future's address (nothing is zeroed or moved there).
        let future = unsafe {
            std::ptr::addr_of_mut!((*p).header).write(Header {
                refs: AtomicU32::new(1),
                name: Cell::new(NAME_OF_TYPE),
                scheduled: Cell::new(true),
                remote_scheduled: AtomicBool::new(false),
                vtable: &Self::VTABLE,
                shared: Arc::as_ptr(shared),
                id,
                root: Cell::new(Rc::into_raw(root)),
                root_reg: Cell::new(0),
                future_live: Cell::new(true),
                waiting_on: Cell::new(0),
            });
            std::ptr::addr_of_mut!((*p).future).cast::<F>()
        };
        let raw = Box::into_raw(task).cast::<Header>();
        // SAFETY: `Box::into_raw` is never null.
        (unsafe { NonNull::new_unchecked(raw) }, future)
    }

    fn future_ptr(header: NonNull<Header>) -> *mut F {
        // SAFETY (for callers): `header` is the start of a `Task<F, N>`
        // (`repr(C)`, header first), so this is its future's address.
        let task = header.cast::<Task<F, N>>().as_ptr();
        // SAFETY: in-bounds field projection of a live allocation.
        unsafe { std::ptr::addr_of_mut!((*task).future).cast::<F>() }
    }

    unsafe fn poll(header: NonNull<Header>, cx: &mut Context<'_>) -> bool {
        let fut = Self::future_ptr(header);
        // SAFETY: `Header::poll`'s caller guarantees exclusive access from
        // the runtime thread; the future is initialised (`future_live`) and
        // never moves out of the allocation, so pinning holds.
        let done = unsafe { Pin::new_unchecked(&mut *fut) }.poll(cx).is_ready();
        if done {
            // SAFETY: as above; it is marked dead by the caller right after.
            unsafe { std::ptr::drop_in_place(fut) };
        }
        done
    }

    unsafe fn drop_future(header: NonNull<Header>) {
        // SAFETY: `Header::drop_future` checked that the future is live, and
        // has exclusive access.
        unsafe { std::ptr::drop_in_place(Self::future_ptr(header)) };
    }

    unsafe fn dealloc(header: NonNull<Header>) {
        // SAFETY: the allocation was made by `allocate` as a
        // `Box<MaybeUninit<Task<F, N>>>`; freeing it as such runs no
        // destructor (the future is gone, the header's fields own nothing
        // by now). That is sound on any thread although `F` need not be
        // `Send`: no `F` is left to touch.
        drop(unsafe { Box::from_raw(header.cast::<MaybeUninit<Task<F, N>>>().as_ptr()) });
    }
}

/// Allocates a task for `Core::spawn_in_place`: see `Task::allocate`. The
/// default name is `N`'s type.
pub(super) fn allocate<F, N>(id: TaskId, shared: &Arc<Shared>, root: Rc<ScopeNode>) -> (NonNull<Header>, *mut F)
where
    F: Future<Output = ()> + 'static,
    N: ?Sized + 'static,
{
    Task::<F, N>::allocate(id, shared, root)
}

/// The runtime lets go of a task: drops its future (if still there) and its
/// root status on this thread, then frees the allocation, or detaches it if
/// wakers still hold it (see the module docs).
///
/// # Safety
/// Runtime thread; `header` is a task the runtime holds (just removed from
/// the slab), and it is not used by the runtime afterwards.
pub(super) unsafe fn release(header: NonNull<Header>) {
    // SAFETY: the runtime still holds its count, so the header is alive.
    let h = unsafe { header.as_ref() };
    // SAFETY: the caller's guarantees are `drop_future`'s.
    unsafe { h.drop_future() };
    // SAFETY: `root` owns one count, given back once (it is nulled).
    drop(unsafe { Rc::from_raw(h.root.replace(std::ptr::null())) });
    // Acquire pairs with the Release of waker drops, so whatever a waker's
    // thread did with the task happens before we free it.
    if h.refs.load(Ordering::Acquire) == 1 {
        // SAFETY: ours is the only count: no waker exists, and none can be
        // made (cloning needs one; polling needs the runtime).
        unsafe { (h.vtable.dealloc)(header) };
        return;
    }
    // Detach: the task now owns a count of `Shared`, so the last waker can
    // still reach it (to count the allocation gone) after the run ended.
    // SAFETY: `shared` is alive (the run holds an Arc); we add a count that
    // `free_detached` gives back.
    unsafe { Arc::increment_strong_count(h.shared) };
    // SAFETY: as above.
    unsafe { &*h.shared }.detached_allocations.fetch_add(1, Ordering::Relaxed);
    if h.refs.fetch_sub(1, Ordering::Release) == 1 {
        fence(Ordering::Acquire);
        // SAFETY: the wakers went away meanwhile; ours was the last count.
        unsafe { free_detached(header) };
    }
}

/// Frees a detached task whose last count has just been dropped.
///
/// # Safety
/// `header` is a detached task (see `release`) with no count left.
unsafe fn free_detached(header: NonNull<Header>) {
    // SAFETY: nobody else can reach the allocation any more.
    let (shared, dealloc) = unsafe { (header.as_ref().shared, header.as_ref().vtable.dealloc) };
    // SAFETY: the future and root were dropped by `release`.
    unsafe { dealloc(header) };
    // SAFETY: the task owned one strong count of `shared` (see `release`).
    let shared = unsafe { Arc::from_raw(shared) };
    shared.detached_allocations.fetch_sub(1, Ordering::Relaxed);
}

/// The one waker vtable. Its data pointer is a task's header.
static WAKER_VTABLE: RawWakerVTable = RawWakerVTable::new(waker_clone, waker_wake, waker_wake_by_ref, waker_drop);

// SAFETY (all four): `ptr` is a task's header, kept alive by the count of
// the waker being operated on (one count per live `Waker`): wakers are made
// only by `Header::poll` (borrowing the runtime's count, ManuallyDrop so it
// is never released), by `main_waker` and by `waker_clone`, which take a
// count of their own.
unsafe fn waker_clone(ptr: *const ()) -> RawWaker {
    // SAFETY: see above.
    let h = unsafe { &*(ptr as *const Header) };
    // Relaxed, as `Arc::clone`: a new count needs no ordering, only a
    // limit so it cannot overflow.
    if h.refs.fetch_add(1, Ordering::Relaxed) > i32::MAX as u32 {
        std::process::abort();
    }
    RawWaker::new(ptr, &WAKER_VTABLE)
}

unsafe fn waker_wake(ptr: *const ()) {
    // SAFETY: see above; this consumes the waker's own count.
    unsafe {
        waker_wake_by_ref(ptr);
        waker_drop(ptr);
    }
}

unsafe fn waker_wake_by_ref(ptr: *const ()) {
    // SAFETY: see above; the header is only read through its thread-safe
    // fields off the runtime thread.
    unsafe { &*(ptr as *const Header) }.wake();
}

unsafe fn waker_drop(ptr: *const ()) {
    // SAFETY: see above.
    let h = unsafe { &*(ptr as *const Header) };
    if h.refs.fetch_sub(1, Ordering::Release) == 1 {
        fence(Ordering::Acquire);
        // SAFETY: the runtime's count is gone (it always outlasts the
        // waker counts until `release`), so the task was detached, and ours
        // was the last count.
        unsafe { free_detached(NonNull::from(h)) };
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

/// A waker for a task the runtime holds, with a count of its own.
pub(crate) fn main_waker(header: &Header) -> Waker {
    let ptr = header as *const Header as *const ();
    // SAFETY: the header is alive (the caller holds the task); the clone
    // takes the count that the returned waker's drop gives back.
    unsafe { Waker::from_raw(waker_clone(ptr)) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn header_is_48_bytes() {
        assert_eq!(std::mem::size_of::<super::Header>(), 48);
    }
}
