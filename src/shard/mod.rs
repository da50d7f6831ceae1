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
//! The coordinator is built above the kernel: it uses only
//! [`run`](crate::run)'s [`Builder`], [`CancelScope`] and
//! [`from_thread`](crate::from_thread).
//!
//! **Remote children** (`remote.rs`, DESIGN.md "The cross-shard
//! protocol"): a nursery on one shard starts children on another with
//! [`Nursery::start_soon_on`](crate::Nursery::start_soon_on) and
//! [`Nursery::start_on`](crate::Nursery::start_on); the nursery waits for
//! them, gets their errors and panics, and cancelling it reaches them with
//! one message per target shard. Each shard *hosts* such children until
//! every shard's main has returned:
//!
//! ```
//! use trioxide::{open_nursery, BoxError, ShardedBuilder};
//! let out = ShardedBuilder::new(2).run(|shard| async move {
//!     if shard.index() == 0 {
//!         // Shard 1's main returns at once; it still runs this child.
//!         let r = open_nursery(|n| async move {
//!             n.start_soon_on(1, || async { Err::<(), BoxError>("from shard 1".into()) })?;
//!             Ok::<_, BoxError>(())
//!         })
//!         .await;
//!         return Ok::<_, BoxError>(r.unwrap_err().errors()[0].to_string());
//!     }
//!     Ok(String::new())
//! });
//! assert_eq!(out.unwrap(), ["from shard 1", ""]);
//! ```
//!
//! **Reports**: [`ShardedBuilder::run_with_report`] gives one
//! [`ShardReport`] per shard. Instruments are per shard: add them to the
//! [`Builder`] that [`ShardedBuilder::configure`] returns for each shard;
//! [`Shard::current`] tells their hooks which shard they run on.
//! [`sharded_task_tree`] (`tree.rs`) gathers every shard's task tree, with
//! each hosted remote child linked to its owner, by sending one query job
//! to each other shard.

use std::cell::RefCell;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use crate::kernel::cancel::CancelScope;
use crate::kernel::error::{BoxError, MultiError};
use crate::kernel::run::{Builder, RunReport};
use crate::kernel::Core;
use crate::thread::from_thread::{current_handle, RuntimeHandle};

mod affinity;
pub mod channel;
pub(crate) mod remote;
mod serve;
mod tree;

use remote::{HostGuard, Registry};
pub use remote::{RemoteError, RemoteTaskStatus};
pub use serve::{Balance, ShardedListener};
pub use tree::{sharded_task_tree, RemoteParent, ShardState, ShardTask, ShardTasks, ShardedTaskTree};

thread_local! {
    /// The cancel scope of the shard main running on this thread, if any:
    /// the target of the cancel message another shard sends.
    static SHARD_SCOPE: RefCell<Option<CancelScope>> = const { RefCell::new(None) };
    /// The shard whose run this thread runs, for [`Shard::current`]: set
    /// before the shard's `Builder` is made, cleared once its run is over.
    static CURRENT_SHARD: std::cell::Cell<Option<Shard>> = const { std::cell::Cell::new(None) };
}

/// Sets `CURRENT_SHARD` for the life of a shard's run on this thread
/// (a panic included), restoring what was there.
struct CurrentShard(Option<Shard>);

impl CurrentShard {
    fn set(shard: Shard) -> CurrentShard {
        CurrentShard(CURRENT_SHARD.with(|c| c.replace(Some(shard))))
    }
}

impl Drop for CurrentShard {
    fn drop(&mut self) {
        CURRENT_SHARD.with(|c| c.set(self.0));
    }
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
    /// The shard this thread runs, from any code on a shard's thread while
    /// its run lasts: tasks, and the hooks of an
    /// [`Instrument`](crate::Instrument) given to that shard's
    /// [`Builder`] (so one instrument type configured on every shard can
    /// tell them apart), from `before_run` to `after_run`. `None` on any
    /// other thread, and in a plain [`run`](crate::run) (a sharded run of
    /// one shard is shard 0 of 1).
    ///
    /// ```
    /// use std::rc::Rc;
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use trioxide::{Builder, Instrument, Shard, ShardedBuilder};
    /// // One instrument per shard, each learning its shard in before_run.
    /// struct WhichShard(Arc<AtomicUsize>);
    /// impl Instrument for WhichShard {
    ///     fn before_run(&self) {
    ///         self.0.store(Shard::current().unwrap().index(), Ordering::SeqCst);
    ///     }
    /// }
    /// let seen: Vec<Arc<AtomicUsize>> = (0..2).map(|_| Arc::new(AtomicUsize::new(99))).collect();
    /// let s = seen.clone();
    /// ShardedBuilder::new(2)
    ///     .configure(move |shard| Builder::new().instrument(Rc::new(WhichShard(s[shard.index()].clone()))))
    ///     .run(|shard| async move {
    ///         assert_eq!(Shard::current(), Some(shard));
    ///         Ok::<_, trioxide::BoxError>(())
    ///     })
    ///     .unwrap();
    /// assert_eq!(seen.iter().map(|a| a.load(Ordering::SeqCst)).collect::<Vec<_>>(), [0, 1]);
    /// assert_eq!(Shard::current(), None); // not on a shard's thread
    /// assert_eq!(trioxide::run(async { Shard::current() }), None);
    /// ```
    pub fn current() -> Option<Shard> {
        CURRENT_SHARD.with(|c| c.get())
    }

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

/// What one shard left behind, from
/// [`ShardedBuilder::run_with_report`]: its [`RunReport`] (tasks, timers
/// and task allocations left, seed) and its remote-children counters.
///
/// ```
/// let (_, reports) = trioxide::ShardedBuilder::new(2).run_with_report(|_| async { Ok::<_, trioxide::BoxError>(()) });
/// assert_eq!(reports.iter().map(|r| r.shard).collect::<Vec<_>>(), [0, 1]);
/// assert!(reports.iter().all(|r| r.run.tasks_left == 0 && r.remote_cancels_received == 0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardReport {
    /// The shard's index.
    pub shard: usize,
    /// What its run left behind (as [`Builder::run_with_report`]).
    pub run: RunReport,
    /// Children other shards started on this one.
    pub remote_children_hosted: u64,
    /// Cancel messages this shard received for remote groups it hosted
    /// (one per group cancelled, whatever its number of children).
    pub remote_cancels_received: u64,
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
    /// thread (so it may hold a fresh [`MockClock`](crate::MockClock), or
    /// an [`Instrument`](crate::Instrument) of its own: instruments and
    /// [`task_tree`](crate::task_tree) are per shard).
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
        self.run_inner(main).0
    }

    /// Like [`run`](ShardedBuilder::run), also reporting what each shard
    /// left behind, in shard order (one [`ShardReport`] per shard whose
    /// run started).
    ///
    /// # Panics
    /// As [`run`](ShardedBuilder::run).
    ///
    /// ```
    /// use trioxide::{open_nursery, BoxError, Builder, ShardedBuilder};
    /// let (out, reports) = ShardedBuilder::new(2)
    ///     .configure(|shard| Builder::new().seed(10 + shard.index() as u64))
    ///     .run_with_report(|shard| async move {
    ///         if shard.index() == 0 {
    ///             open_nursery(|n| async move {
    ///                 n.start_soon_on(1, || async {})?;
    ///                 Ok::<_, BoxError>(())
    ///             })
    ///             .await?;
    ///         }
    ///         Ok::<_, BoxError>(shard.index())
    ///     });
    /// assert_eq!(out.unwrap(), [0, 1]);
    /// let left: Vec<_> = reports.iter().map(|r| (r.run.tasks_left, r.run.timers_left, r.run.task_allocations_left)).collect();
    /// assert_eq!(left, [(0, 0, 0), (0, 0, 0)]);
    /// assert_eq!((reports[0].run.seed, reports[1].run.seed), (10, 11));
    /// assert_eq!((reports[0].remote_children_hosted, reports[1].remote_children_hosted), (0, 1));
    /// ```
    #[allow(clippy::type_complexity)]
    pub fn run_with_report<F, Fut, T, E>(self, main: F) -> (Result<Vec<T>, MultiError>, Vec<ShardReport>)
    where
        F: Fn(Shard) -> Fut + Sync,
        Fut: Future<Output = Result<T, E>>,
        T: Send,
        E: Into<BoxError>,
    {
        self.run_inner(main)
    }

    #[allow(clippy::type_complexity)]
    fn run_inner<F, Fut, T, E>(self, main: F) -> (Result<Vec<T>, MultiError>, Vec<ShardReport>)
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
            return (Ok(Vec::new()), Vec::new());
        }
        if n == 1 {
            // A plain run on the calling thread: no coordinator, no scope.
            let shard = Shard { index: 0, count: 1 };
            let _current = CurrentShard::set(shard);
            let _pinned = cpus.first().and_then(|&cpu| affinity::pin_current(cpu));
            let (out, run) = builder_for(shard).run_with_report(main(shard));
            let report = vec![ShardReport { shard: 0, run, remote_children_hosted: 0, remote_cancels_received: 0 }];
            return match out {
                Ok(v) => (Ok(vec![v]), report),
                Err(e) => (Err(MultiError::new(vec![Box::new(ShardError { shard: 0, error: e.into() })])), report),
            };
        }
        let coord = Coordinator::new(n);
        let registry = Registry::new(n);
        let reports: Mutex<Vec<Option<RunReport>>> = Mutex::new(vec![None; n]);
        let run_one = |index: usize| -> Outcome<T> {
            let shard = Shard { index, count: n };
            let current = CurrentShard::set(shard);
            let _pinned = cpus.get(index).and_then(|&cpu| affinity::pin_current(cpu));
            let out = catch_unwind(AssertUnwindSafe(|| {
                builder_for(shard).run_with_report(shard_main(&coord, &registry, shard, &main))
            }));
            // Whatever happened, this shard accepts no more children (and
            // counts as registered, so no other shard waits for it).
            registry.close(index);
            remote::clear_host();
            drop(current);
            let out = match out {
                Ok((o, report)) => {
                    reports.lock().unwrap_or_else(|e| e.into_inner())[index] = Some(report);
                    o
                }
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
            // A thread that could not start: that shard fails (the others
            // are cancelled) and is closed before shard 0 runs, so no shard
            // waits for it to register.
            for (i, h) in handles.iter().enumerate() {
                if h.is_err() {
                    registry.close(i + 1);
                    coord.finish(i + 1, true);
                }
            }
            let mut outcomes = vec![run_one(0)];
            for (i, h) in handles.into_iter().enumerate() {
                outcomes.push(match h {
                    // run_one catches every panic, so join only fails if the
                    // runtime itself could not unwind cleanly.
                    Ok(h) => h.join().unwrap_or_else(|p| {
                        coord.note_panic(i + 1);
                        Outcome::Panicked(p)
                    }),
                    // Closed and reported as failed above.
                    Err(e) => Outcome::Failed(Box::new(e)),
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
        let reports = reports.into_inner().unwrap_or_else(|e| e.into_inner());
        let reports = reports
            .into_iter()
            .enumerate()
            .filter_map(|(shard, r)| {
                let stats = &registry.stats[shard];
                r.map(|run| ShardReport {
                    shard,
                    run,
                    remote_children_hosted: stats.hosted.load(std::sync::atomic::Ordering::Relaxed),
                    remote_cancels_received: stats.cancels.load(std::sync::atomic::Ordering::Relaxed),
                })
            })
            .collect();
        if errors.is_empty() && values.len() == n {
            (Ok(values), reports)
        } else {
            // A shard is cancelled only after another failed, so `errors`
            // is not empty here.
            (Err(MultiError::new(errors)), reports)
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
async fn shard_main<F, Fut, T, E>(coord: &Coordinator, registry: &Arc<Registry>, shard: Shard, main: &F) -> Outcome<T>
where
    F: Fn(Shard) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    // The host of remote children; waits for every shard to be up.
    let host = HostGuard::install(registry.clone(), shard.index, current_handle());
    let scope = CancelScope::new();
    let _guard = ScopeGuard::set(scope.clone());
    if !coord.register(shard.index, current_handle()) {
        scope.cancel();
    }
    let body = scope.run(async { main(shard).await.map_err(Into::into) });
    let mut body = std::pin::pin!(body);
    // A panic is caught here, not left to unwind out of the run: the host
    // must go on until the children it runs for other shards have ended
    // (they are cancelled through their owners, as this shard's failure
    // cancels every shard), and only then does the panic resume, on the
    // caller.
    let r = std::future::poll_fn(|cx| {
        let core = Core::current();
        let status = core.current_status_ptr();
        match catch_unwind(AssertUnwindSafe(|| body.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(panic) => {
                // As every catch_unwind site: the frames that unwound did
                // not restore the cancel status.
                core.swap_status(status);
                Poll::Ready(Err(panic))
            }
        }
    })
    .await;
    let out = match r {
        Ok(Ok(Some(v))) => Outcome::Value(v),
        Ok(Ok(None)) => Outcome::Cancelled,
        Ok(Err(e)) => Outcome::Failed(e),
        Err(panic) => {
            coord.note_panic(shard.index);
            Outcome::Panicked(panic)
        }
    };
    // Signal at once, not after this run's teardown: the others' cancel
    // latency does not include it.
    coord.finish(shard.index, out.is_failure());
    // Go on hosting other shards' children until every main has returned.
    host.main_returned().await;
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
