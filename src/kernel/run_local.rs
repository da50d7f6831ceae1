//! Run-local slots: state that a layer above the kernel keeps per run
//! (Trio's `RunVar`), held by the kernel without knowing its type.
//!
//! The thread layer keeps its default [`CapacityLimiter`](crate::CapacityLimiter)
//! this way: it is made on first use in a run and dropped with the run, so
//! two runs (even on one thread) never share it, and the kernel does not
//! name the sync layer.

use std::any::Any;
use std::cell::RefCell;

use crate::kernel::Core;

/// A run-scoped variable: each run sees its own value, made by `init` on
/// first use in that run. Declare it as a `static`; its address is its key.
///
/// ```ignore
/// static LIMIT: RunVar<Rc<Cell<u32>>> = RunVar::new("my layer's limit", || Rc::new(Cell::new(40)));
/// let limit = LIMIT.get(); // this run's value
/// ```
pub(crate) struct RunVar<T: Clone + 'static> {
    /// For messages only.
    name: &'static str,
    init: fn() -> T,
}

impl<T: Clone + 'static> RunVar<T> {
    /// A variable whose value in each run starts as `init()`.
    pub(crate) const fn new(name: &'static str, init: fn() -> T) -> RunVar<T> {
        RunVar { name, init }
    }

    /// This run's value (a clone), made on first use.
    ///
    /// # Panics
    /// Outside [`run`](crate::run).
    #[track_caller]
    pub(crate) fn get(&'static self) -> T {
        let locals = &Core::current().run_locals;
        let key = self as *const RunVar<T> as usize;
        if let Some(v) = locals.find(key) {
            return v;
        }
        // Made outside the borrow: `init` may itself use the runtime.
        let value = (self.init)();
        locals.insert(key, Box::new(value.clone()));
        value
    }
}

impl<T: Clone + 'static> std::fmt::Debug for RunVar<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunVar").field("name", &self.name).finish()
    }
}

/// The slots of one run, a field of `Core`: `(key, value)` pairs, where
/// the key is the address of the `RunVar` static and the value's type is
/// that variable's `T`. Few per run (one per layer that needs one), so a
/// vector beats a map.
#[derive(Default)]
pub(super) struct RunLocals {
    slots: RefCell<Vec<(usize, Box<dyn Any>)>>,
}

impl RunLocals {
    fn find<T: Clone + 'static>(&self, key: usize) -> Option<T> {
        let slots = self.slots.borrow();
        let (_, v) = slots.iter().find(|(k, _)| *k == key)?;
        v.downcast_ref::<T>().cloned()
    }

    fn insert(&self, key: usize, value: Box<dyn Any>) {
        self.slots.borrow_mut().push((key, value));
    }

    /// Drops every value (run teardown), outside the borrow so that a
    /// value's destructor may use the runtime.
    pub(super) fn clear(&self) {
        let slots = std::mem::take(&mut *self.slots.borrow_mut());
        drop(slots);
    }
}
