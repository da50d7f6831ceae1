//! Sharded runs (issue 13, part 1): one trioxide run per thread, the
//! shards forming the top of one tree.
//!
//! [`run_sharded`] (or [`ShardedBuilder`]) starts `n` independent runs, each
//! with its own scheduler, timers and I/O driver, one per thread: shard 0
//! on the calling thread, the others on scoped threads. The call returns
//! when every shard is done. The first shard to fail (an `Err`, or a panic)
//! cancels the others: each shard's main runs inside a [`CancelScope`], and
//! the failing shard's thread sends one message to each shard still running
//! through its [`RuntimeHandle`], which cancels that scope there. Shards
//! cancelled that way report nothing; every real error arrives in the
//! [`MultiError`], as a [`ShardError`] naming its shard. A panic resumes on
//! the caller once every shard has finished.
//!
//! Built above the kernel: it uses only [`run`](crate::run)'s
//! [`Builder`], [`CancelScope`] and [`from_thread`](crate::from_thread).

use std::cell::RefCell;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::Mutex;

use crate::kernel::cancel::CancelScope;
use crate::kernel::error::{BoxError, MultiError};
use crate::kernel::run::Builder;
use crate::thread::from_thread::{current_handle, RuntimeHandle};

mod affinity;

thread_local! {
    /// The cancel scope of the shard main running on this thread, if any:
    /// the target of the cancel message another shard sends.
    static SHARD_SCOPE: RefCell<Option<CancelScope>> = const { RefCell::new(None) };
}

/// Which shard this is: its index (0 to `count - 1`) and how many there are.
///
/// ```
/// let out = trioxide::run_sharded(2, |shard: trioxide::Shard| async move {
///     Ok::<_, trioxide::BoxError>((shard.index(), shard.count()))
/// });
/// assert_eq!(out.unwrap(), [(0, 2), (1, 2)]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    index: usize,
    count: usize,
}

impl Shard {
    /// This shard's index, from 0 (the calling thread's shard) to
    /// `count() - 1`.
    ///
    /// ```
    /// let out = trioxide::run_sharded(3, |shard| async move { Ok::<_, trioxide::BoxError>(shard.index()) });
    /// assert_eq!(out.unwrap(), [0, 1, 2]);
    /// ```
    pub fn index(&self) -> usize {
        self.index
    }

    /// How many shards the sharded run has.
    ///
    /// ```
    /// let out = trioxide::run_sharded(2, |shard| async move { Ok::<_, trioxide::BoxError>(shard.count()) });
    /// assert_eq!(out.unwrap(), [2, 2]);
    /// ```
    pub fn count(&self) -> usize {
        self.count
    }
}

/// The error of one failing shard: its index and what its main returned.
/// A sharded run's [`MultiError`] holds one per failing shard, boxed, in
/// shard order.
///
/// ```
/// use trioxide::{run_sharded, BoxError, ShardError};
/// let err = run_sharded(2, |shard| async move {
///     if shard.index() == 1 {
///         return Err::<(), BoxError>("disk full".into());
///     }
///     Ok(())
/// })
/// .unwrap_err();
/// let e = err.errors()[0].downcast_ref::<ShardError>().unwrap();
/// assert_eq!((e.shard(), e.error().to_string()), (1, "disk full".to_string()));
/// assert_eq!(e.to_string(), "shard 1: disk full");
/// ```
#[derive(Debug)]
pub struct ShardError {
    shard: usize,
    error: BoxError,
}

impl ShardError {
    /// The index of the shard that failed.
    ///
    /// ```
    /// let err = trioxide::run_sharded(1, |_| async { Err::<(), _>("boom") }).unwrap_err();
    /// let e = err.errors()[0].downcast_ref::<trioxide::ShardError>().unwrap();
    /// assert_eq!(e.shard(), 0);
    /// ```
    pub fn shard(&self) -> usize {
        self.shard
    }

    /// The error the shard's main returned.
    ///
    /// ```
    /// let err = trioxide::run_sharded(1, |_| async { Err::<(), _>("boom") }).unwrap_err();
    /// let e = err.errors()[0].downcast_ref::<trioxide::ShardError>().unwrap();
    /// assert_eq!(e.error().to_string(), "boom");
    /// ```
    pub fn error(&self) -> &BoxError {
        &self.error
    }

    /// Takes the error out.
    ///
    /// ```
    /// let err = trioxide::run_sharded(1, |_| async { Err::<(), _>("boom") }).unwrap_err();
    /// let e = err.into_errors().remove(0).downcast::<trioxide::ShardError>().unwrap();
    /// assert_eq!(e.into_error().to_string(), "boom");
    /// ```
    pub fn into_error(self) -> BoxError {
        self.error
    }
}

impl fmt::Display for ShardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shard {}: {}", self.shard, self.error)
    }
}

impl StdError for ShardError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.error)
    }
}

/// Runs `main` once per shard, `n` shards on `n` threads (shard 0 on the
/// calling thread), each a separate trioxide run, and returns their values
/// in shard order; see [`ShardedBuilder::run`] for the rules.
///
/// `main` is called on each shard's own thread, so its future need not be
/// `Send`; only the values and errors cross threads. `n = 1` is a plain
/// [`run`](crate::run) on the calling thread; `n = 0` runs nothing and
/// returns an empty vector.
///
/// ```
/// use std::rc::Rc; // !Send inside a shard is fine
/// let out = trioxide::run_sharded(2, |shard| async move {
///     let local = Rc::new(shard.index() * 10);
///     trioxide::checkpoint().await?;
///     Ok::<_, trioxide::BoxError>(*local)
/// });
/// assert_eq!(out.unwrap(), [0, 10]);
/// ```
pub fn run_sharded<F, Fut, T, E>(n: usize, main: F) -> Result<Vec<T>, MultiError>
where
    F: Fn(Shard) -> Fut + Sync,
    Fut: Future<Output = Result<T, E>>,
    T: Send,
    E: Into<BoxError>,
{
    ShardedBuilder::new(n).run(main)
}

type Configure<'a> = Box<dyn Fn(Shard) -> Builder + Sync + 'a>;

/// Configures a sharded run: the number of shards, pinning to cores, and a
/// [`Builder`] per shard (seed, clock, instruments).
///
/// ```
/// use trioxide::{Builder, ShardedBuilder};
/// let out = ShardedBuilder::new(2)
///     .configure(|shard| Builder::new().seed(shard.index() as u64))
///     .run(|_shard| async { Ok::<_, trioxide::BoxError>(trioxide::current_seed()) });
/// assert_eq!(out.unwrap(), [0, 1]);
/// ```
#[must_use = "a ShardedBuilder does nothing until you call .run(main)"]
pub struct ShardedBuilder<'a> {
    shards: usize,
    pin: bool,
    configure: Option<Configure<'a>>,
}

impl fmt::Debug for ShardedBuilder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardedBuilder")
            .field("shards", &self.shards)
            .field("pin_to_cores", &self.pin)
            .field("configure", &self.configure.is_some())
            .finish()
    }
}

impl<'a> ShardedBuilder<'a> {
    /// A sharded run of `shards` shards, not pinned, each shard on
    /// `Builder::new()`.
    ///
    /// ```
    /// let out = trioxide::ShardedBuilder::new(2).run(|s| async move { Ok::<_, trioxide::BoxError>(s.index()) });
    /// assert_eq!(out.unwrap(), [0, 1]);
    /// ```
    pub fn new(shards: usize) -> Self {
        ShardedBuilder { shards, pin: false, configure: None }
    }

    /// Pins shard `i` to the `i`-th CPU the calling thread may run on
    /// (`sched_setaffinity`, Linux only). Shards beyond the number of such
    /// CPUs, and every shard on other systems, stay unpinned. Shard 0's
    /// thread (the caller's) gets its former affinity back at the end.
    ///
    /// ```
    /// let out = trioxide::ShardedBuilder::new(2)
    ///     .pin_to_cores(true)
    ///     .run(|s| async move { Ok::<_, trioxide::BoxError>(s.index()) });
    /// assert_eq!(out.unwrap(), [0, 1]);
    /// ```
    pub fn pin_to_cores(mut self, pin: bool) -> Self {
        self.pin = pin;
        self
    }

    /// Makes each shard's [`Builder`] with `f`, called on that shard's
    /// thread (so it may hold a fresh [`MockClock`](crate::MockClock)).
    ///
    /// ```
    /// use std::time::Duration;
    /// use trioxide::{Builder, MockClock, ShardedBuilder};
    /// let out = ShardedBuilder::new(2)
    ///     .configure(|_| {
    ///         let clock = MockClock::new();
    ///         clock.set_autojump_threshold(Some(Duration::ZERO));
    ///         Builder::new().clock(clock)
    ///     })
    ///     .run(|_| async {
    ///         let t0 = trioxide::current_time();
    ///         trioxide::sleep(Duration::from_secs(3600)).await?;
    ///         Ok::<_, trioxide::BoxError>(trioxide::current_time().saturating_duration_since(t0))
    ///     });
    /// assert_eq!(out.unwrap(), [Duration::from_secs(3600); 2]);
    /// ```
    pub fn configure<C>(mut self, f: C) -> Self
    where
        C: Fn(Shard) -> Builder + Sync + 'a,
    {
        self.configure = Some(Box::new(f));
        self
    }

    /// Runs `main` once per shard and returns the values in shard order,
    /// or a [`MultiError`] of one [`ShardError`] per failing shard (see
    /// [`run_sharded`]).
    ///
    /// # Panics
    /// A panic in a shard cancels the others and resumes here, with the
    /// first shard's panic payload, after every shard has finished.
    ///
    /// ```
    /// use trioxide::{sleep_forever, BoxError, ShardedBuilder};
    /// // Shard 1 fails; shard 0, asleep forever, is cancelled and reports nothing.
    /// let err = ShardedBuilder::new(2)
    ///     .run(|shard| async move {
    ///         if shard.index() == 1 {
    ///             return Err::<(), BoxError>("shard 1 gave up".into());
    ///         }
    ///         sleep_forever().await?;
    ///         Ok(())
    ///     })
    ///     .unwrap_err();
    /// assert_eq!(err.to_string(), "1 error:\n  [0] shard 1: shard 1 gave up");
    /// ```
    pub fn run<F, Fut, T, E>(self, main: F) -> Result<Vec<T>, MultiError>
    where
        F: Fn(Shard) -> Fut + Sync,
        Fut: Future<Output = Result<T, E>>,
        T: Send,
        E: Into<BoxError>,
    {
        let n = self.shards;
        let cpus = if self.pin { affinity::allowed_cpus() } else { Vec::new() };
        let builder_for = |shard: Shard| match &self.configure {
            Some(f) => f(shard),
            None => Builder::new(),
        };
        if n == 0 {
            return Ok(Vec::new());
        }
        if n == 1 {
            // A plain run on the calling thread: no coordinator, no scope.
            let shard = Shard { index: 0, count: 1 };
            let _pinned = cpus.first().and_then(|&cpu| affinity::pin_current(cpu));
            return match builder_for(shard).run(main(shard)) {
                Ok(v) => Ok(vec![v]),
                Err(e) => Err(MultiError::new(vec![Box::new(ShardError { shard: 0, error: e.into() })])),
            };
        }
        let coord = Coordinator::new(n);
        let run_one = |index: usize| -> Outcome<T> {
            let shard = Shard { index, count: n };
            let _pinned = cpus.get(index).and_then(|&cpu| affinity::pin_current(cpu));
            let out = catch_unwind(AssertUnwindSafe(|| builder_for(shard).run(shard_main(&coord, shard, &main))));
            let out = match out {
                Ok(o) => o,
                Err(panic) => {
                    coord.note_panic(index);
                    Outcome::Panicked(panic)
                }
            };
            // Idempotent after shard_main's own call; needed for a panic.
            coord.finish(index, out.is_failure());
            out
        };
        let mut outcomes: Vec<Outcome<T>> = std::thread::scope(|s| {
            let handles: Vec<_> = (1..n)
                .map(|index| {
                    let run_one = &run_one;
                    std::thread::Builder::new()
                        .name(format!("trioxide-shard-{index}"))
                        .spawn_scoped(s, move || run_one(index))
                })
                .collect();
            let mut outcomes = vec![run_one(0)];
            for (i, h) in handles.into_iter().enumerate() {
                outcomes.push(match h {
                    // run_one catches every panic, so join only fails if the
                    // runtime itself could not unwind cleanly.
                    Ok(h) => h.join().unwrap_or_else(|p| {
                        coord.note_panic(i + 1);
                        Outcome::Panicked(p)
                    }),
                    Err(e) => {
                        // The thread could not start: that shard fails, the
                        // others are cancelled.
                        coord.finish(i + 1, true);
                        Outcome::Failed(Box::new(e))
                    }
                });
            }
            outcomes
        });
        if let Some(first) = coord.first_panic() {
            if let Outcome::Panicked(p) = std::mem::replace(&mut outcomes[first], Outcome::Cancelled) {
                resume_unwind(p);
            }
        }
        let mut values = Vec::with_capacity(n);
        let mut errors: Vec<BoxError> = Vec::new();
        for (shard, o) in outcomes.into_iter().enumerate() {
            match o {
                Outcome::Value(v) => values.push(v),
                Outcome::Failed(error) => errors.push(Box::new(ShardError { shard, error })),
                Outcome::Cancelled | Outcome::Panicked(_) => {}
            }
        }
        if errors.is_empty() && values.len() == n {
            Ok(values)
        } else {
            // A shard is cancelled only after another failed, so `errors`
            // is not empty here.
            Err(MultiError::new(errors))
        }
    }
}

/// What one shard ended with.
enum Outcome<T> {
    Value(T),
    /// Its scope was cancelled because another shard failed.
    Cancelled,
    Failed(BoxError),
    Panicked(Box<dyn std::any::Any + Send>),
}

impl<T> Outcome<T> {
    fn is_failure(&self) -> bool {
        matches!(self, Outcome::Failed(_) | Outcome::Panicked(_))
    }
}

/// One shard's main: enter the shard's cancel scope, register the run's
/// handle (or cancel at once if another shard already failed), run the
/// user's future, unregister (and cancel the others if it failed).
async fn shard_main<F, Fut, T, E>(coord: &Coordinator, shard: Shard, main: &F) -> Outcome<T>
where
    F: Fn(Shard) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    let scope = CancelScope::new();
    let _guard = ScopeGuard::set(scope.clone());
    if !coord.register(shard.index, current_handle()) {
        scope.cancel();
    }
    let r = scope.run(async { main(shard).await.map_err(Into::into) }).await;
    let out = match r {
        Ok(Some(v)) => Outcome::Value(v),
        Ok(None) => Outcome::Cancelled,
        Err(e) => Outcome::Failed(e),
    };
    // Signal at once, not after this run's teardown: the others' cancel
    // latency does not include it.
    coord.finish(shard.index, out.is_failure());
    out
}

/// Publishes the shard's scope in `SHARD_SCOPE` for as long as its main
/// runs (a panic included), restoring what was there.
struct ScopeGuard {
    prev: Option<CancelScope>,
}

impl ScopeGuard {
    fn set(scope: CancelScope) -> Self {
        ScopeGuard { prev: SHARD_SCOPE.with(|s| s.replace(Some(scope))) }
    }
}

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        let prev = self.prev.take();
        SHARD_SCOPE.with(|s| *s.borrow_mut() = prev);
    }
}

/// The cancel message, run on the target shard's thread between two
/// scheduler passes. If that shard's main has already returned, the slot
/// is empty (or the run is over and the message was dropped): nothing to do.
fn cancel_this_shard() {
    SHARD_SCOPE.with(|s| {
        if let Some(scope) = s.borrow().as_ref() {
            scope.cancel();
        }
    });
}

/// The state the shards share: who is still running (and how to reach it),
/// and whether one has failed.
struct Coordinator {
    state: Mutex<CoordState>,
}

struct CoordState {
    /// `Some` while the shard's main runs.
    handles: Vec<Option<RuntimeHandle>>,
    /// Set by the first shard to fail; later shards cancel themselves.
    failed: bool,
    /// The first shard to panic, whose payload resumes on the caller.
    first_panic: Option<usize>,
    /// Shards whose run has ended (or whose thread never started).
    done: Vec<bool>,
}

impl Coordinator {
    fn new(n: usize) -> Self {
        Coordinator {
            state: Mutex::new(CoordState {
                handles: vec![None; n],
                failed: false,
                first_panic: None,
                done: vec![false; n],
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CoordState> {
        // A panic never happens while the lock is held (no user code runs
        // under it), but do not let poisoning turn into a second panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a running shard; false if another shard already failed
    /// (the caller then cancels its own scope: no message needed).
    fn register(&self, index: usize, handle: RuntimeHandle) -> bool {
        let mut st = self.lock();
        if st.failed || st.done[index] {
            return false;
        }
        st.handles[index] = Some(handle);
        true
    }

    /// Marks a shard done; if it failed and is the first to, sends one
    /// cancel message to every shard still running.
    fn finish(&self, index: usize, failed: bool) {
        let targets: Vec<RuntimeHandle> = {
            let mut st = self.lock();
            st.handles[index] = None;
            st.done[index] = true;
            if !failed || st.failed {
                return;
            }
            st.failed = true;
            st.handles.iter_mut().filter_map(Option::take).collect()
        };
        for h in targets {
            // RunFinished: that shard's run ended meanwhile; it no longer
            // needs cancelling.
            let _ = h.run_sync_soon(cancel_this_shard);
        }
    }

    fn note_panic(&self, index: usize) {
        let mut st = self.lock();
        if st.first_panic.is_none() {
            st.first_panic = Some(index);
        }
    }

    fn first_panic(&self) -> Option<usize> {
        self.lock().first_panic
    }
}
