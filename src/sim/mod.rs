//! Deterministic simulation, part 1: schedules and traces.
//!
//! A simulated run is an ordinary run with everything that could vary
//! fixed by one seed: the clock is a [`MockClock`] that autojumps as soon
//! as every task waits (threshold 0), the scheduler's choices come from the
//! seeded random source under the chosen [`Schedule`], and the run is
//! traced, so two runs of one case can be compared bit for bit.
//!
//! * [`Builder`] runs one case: `sim::Builder::new().seed(s).schedule(..).run(main)`.
//! * [`check_determinism`] runs a case twice and fails loudly, naming the
//!   first event where the traces differ.
//! * [`explore`] runs many cases and reports the first failing one as one
//!   line that reproduces it; the environment variable [`SIM_ENV`]
//!   (`TRIOXIDE_SIM=seed=1234,schedule=pct3`) makes it run exactly that
//!   case.
//!
//! [`to_thread::run_sync`](crate::to_thread::run_sync) runs its closure
//! inline, on the runtime thread, and then yields once (a shielded
//! checkpoint): no worker thread, no capacity limiter, and nothing else
//! runs while the closure does. A closure that calls back into the run
//! through `from_thread` cannot work inline: it gets
//! [`FromThreadError::OnRuntimeThread`](crate::from_thread::FromThreadError::OnRuntimeThread).
//!
//! A simulated run in which every task waits and nothing can wake one (no
//! timer, no delivery of the simulated network, no I/O source, no
//! [`RuntimeHandle`](crate::from_thread::RuntimeHandle) held by a thread)
//! does not hang: it panics with a message that starts with [`DEADLOCK`]
//! and names the waiting tasks, which [`explore`] reports as a failure with
//! the line that reproduces it.
//!
//! # The simulated network
//! [`Builder::net`] gives the run a network: [`net`] is its handle,
//! [`Net::add_host`] makes a [`Host`] with an address, and code run by
//! [`Host::run`] or [`Host::enter`] (with every task of the nurseries it
//! opens) is on that host. The ordinary API then talks over the
//! simulated network, unchanged: [`TcpListener::bind`](crate::TcpListener::bind),
//! [`TcpStream::connect`](crate::TcpStream::connect),
//! [`open_tcp_stream`](crate::open_tcp_stream) (host names resolve to the
//! simulated hosts), [`serve_tcp`](crate::serve_tcp), and every stream
//! operation of [`TcpStream`](crate::TcpStream) (the poll layer and
//! `futures-io` included). Each write is a segment that arrives at a
//! virtual time drawn from the seed ([`NetConfig`]: latency, jitter, loss
//! as retransmission delay, bandwidth); [`Net::partition`],
//! [`Net::clog_link`], [`Net::clog_host`], [`Host::kill`] and
//! [`Host::restart`] are the faults. No file descriptor, no epoll: every
//! delivery is a timer of the run.
//!
//! ```
//! use std::time::Duration;
//! use trioxide::{current_time, open_nursery, open_tcp_stream, sim, BoxError, TcpListener};
//!
//! let cfg = sim::NetConfig::new().latency(Duration::from_millis(5));
//! let rtt = sim::Builder::new().seed(1).net(cfg).run(open_nursery(|n| async move {
//!     let net = sim::net();
//!     let server = net.add_host("kv1", "10.0.0.1".parse()?)?;
//!     let client = net.add_host("client", "10.0.0.2".parse()?)?;
//!     n.start_soon(async move {
//!         server.run(|| async {
//!             let listener = TcpListener::bind("0.0.0.0:7000".parse()?)?;
//!             let (s, _) = listener.accept().await?;
//!             let mut buf = [0u8; 4];
//!             let k = s.receive_some(&mut buf).await?;
//!             s.send_all(&buf[..k]).await?;
//!             Ok::<_, BoxError>(())
//!         }).await
//!     })?;
//!     let rtt = client.enter(async {
//!         let s = open_tcp_stream("kv1", 7000).await?; // one round trip: 10 ms
//!         let t0 = current_time();
//!         s.send_all(b"ping").await?;
//!         let mut buf = [0u8; 4];
//!         s.receive_some(&mut buf).await?;
//!         Ok::<_, BoxError>(current_time().saturating_duration_since(t0))
//!     }).await?;
//!     Ok::<_, BoxError>(rtt)
//! })).unwrap();
//! assert_eq!(rtt, Some(Duration::from_millis(10)));
//! ```
//!
//! [`UdpSocket`](crate::UdpSocket) on a host uses the simulated network
//! too: a datagram arrives one delay later, or is dropped (loss, a
//! partition or clog, nobody bound).
//!
//! Not simulated (see DESIGN.md, "Deterministic simulation"): Unix
//! sockets, which stay real, and the system clock read by code that
//! bypasses the run's clock. A program that uses only the run's clock,
//! timers, nurseries, cancel scopes, channels, sync primitives, in-memory
//! streams and (in a run with a network) TCP and UDP is deterministic.
//!
//! ```
//! use std::time::Duration;
//! use trioxide::{sim, sleep, Schedule};
//! let out = sim::Builder::new().seed(7).schedule(Schedule::pct(3)).run(async {
//!     sleep(Duration::from_secs(60)).await?; // virtual: returns at once
//!     Ok::<_, trioxide::Cancelled>("slept")
//! });
//! assert_eq!(out, Ok("slept"));
//! ```

use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::str::FromStr;
use std::time::Duration;

use crate::{MockClock, RunReport, Schedule, Trace};

pub(crate) mod net;

pub use self::net::{net, try_net, Host, Net, NetConfig};

/// The environment variable that makes [`explore`] run exactly one case:
/// `TRIOXIDE_SIM=seed=1234,schedule=pct3 cargo test the_test`.
///
/// ```
/// assert_eq!(trioxide::sim::SIM_ENV, "TRIOXIDE_SIM");
/// ```
pub const SIM_ENV: &str = "TRIOXIDE_SIM";

/// Events a simulated run keeps for diagnosis (all are hashed).
const KEEP_EVENTS: usize = 100_000;

/// One simulated case: a seed and a schedule. Written and read as
/// `seed=1234,schedule=pct3` (the value of [`SIM_ENV`]).
///
/// ```
/// use trioxide::sim::Case;
/// use trioxide::Schedule;
/// let case: Case = "seed=1234,schedule=pct3".parse().unwrap();
/// assert_eq!(case, Case { seed: 1234, schedule: Schedule::pct(3) });
/// assert_eq!(case.to_string(), "seed=1234,schedule=pct3");
/// assert!("seed=x".parse::<Case>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Case {
    /// The run's seed.
    pub seed: u64,
    /// The run's schedule.
    pub schedule: Schedule,
}

impl Case {
    /// A [`Builder`] for this case.
    ///
    /// ```
    /// use trioxide::{sim::Case, Schedule};
    /// let case = Case { seed: 3, schedule: Schedule::Random };
    /// assert_eq!(case.builder().run(async { 1 }), 1);
    /// ```
    pub fn builder(self) -> Builder {
        Builder::new().seed(self.seed).schedule(self.schedule)
    }

    /// The case named by [`SIM_ENV`], if it is set.
    ///
    /// # Errors
    /// If the variable is set but is not `seed=N,schedule=S`.
    ///
    /// ```
    /// // Unset in this doc test:
    /// assert_eq!(trioxide::sim::Case::from_env(), Ok(None));
    /// ```
    pub fn from_env() -> Result<Option<Case>, ParseCaseError> {
        match std::env::var(SIM_ENV) {
            Ok(v) => v.trim().parse().map(Some),
            Err(_) => Ok(None),
        }
    }
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seed={},schedule={}", self.seed, self.schedule)
    }
}

/// A [`Case`] that could not be parsed.
///
/// ```
/// let e = "seed=1".parse::<trioxide::sim::Case>().unwrap_err();
/// assert_eq!(e.to_string(), "bad TRIOXIDE_SIM case `seed=1` (expected seed=N,schedule=S)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseCaseError(String);

impl fmt::Display for ParseCaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad {SIM_ENV} case `{}` (expected seed=N,schedule=S)", self.0)
    }
}

impl std::error::Error for ParseCaseError {}

impl FromStr for Case {
    type Err = ParseCaseError;

    fn from_str(s: &str) -> Result<Case, ParseCaseError> {
        let bad = || ParseCaseError(s.to_string());
        let (mut seed, mut schedule) = (None, None);
        for part in s.split(',') {
            match part.trim().split_once('=') {
                Some(("seed", v)) => seed = Some(v.parse::<u64>().map_err(|_| bad())?),
                Some(("schedule", v)) => schedule = Some(v.parse::<Schedule>().map_err(|_| bad())?),
                _ => return Err(bad()),
            }
        }
        match (seed, schedule) {
            (Some(seed), Some(schedule)) => Ok(Case { seed, schedule }),
            _ => Err(bad()),
        }
    }
}

/// Configures one simulated run: a seed (default 0), a schedule (default
/// [`Schedule::Batch`]), a [`MockClock`] with autojump threshold 0, and
/// tracing on.
///
/// ```
/// use trioxide::{sim, Schedule};
/// let (out, report, trace) = sim::Builder::new().seed(1).schedule(Schedule::Random).run_with_trace(async { 2 });
/// assert_eq!(out, 2);
/// assert_eq!(report.seed, 1);
/// assert_eq!(report.trace_hash, Some(trace.hash()));
/// ```
#[derive(Debug, Clone, Copy, Default)]
#[must_use = "a sim::Builder does nothing until you call .run(main)"]
pub struct Builder {
    seed: u64,
    schedule: Schedule,
    net: Option<NetConfig>,
}

impl Builder {
    /// Seed 0, the batch schedule.
    ///
    /// ```
    /// assert_eq!(trioxide::sim::Builder::new().case().seed, 0);
    /// ```
    pub fn new() -> Builder {
        Builder { seed: 0, schedule: Schedule::Batch, net: None }
    }

    /// Gives the run a simulated network with these parameters (see
    /// [`net`]): `TcpListener`, `TcpStream`, `open_tcp_stream` and
    /// `serve_tcp` then use it instead of real sockets.
    ///
    /// ```
    /// use trioxide::sim;
    /// assert!(sim::Builder::new().net(sim::NetConfig::new()).run(async { sim::try_net().is_some() }));
    /// assert!(sim::Builder::new().run(async { sim::try_net().is_none() }));
    /// ```
    pub fn net(mut self, config: NetConfig) -> Builder {
        self.net = Some(config);
        self
    }

    /// The seed of every random choice of the run.
    ///
    /// ```
    /// assert_eq!(trioxide::sim::Builder::new().seed(5).run(async { trioxide::current_seed() }), 5);
    /// ```
    pub fn seed(mut self, seed: u64) -> Builder {
        self.seed = seed;
        self
    }

    /// The scheduling strategy.
    ///
    /// ```
    /// use trioxide::{sim, Schedule};
    /// assert_eq!(sim::Builder::new().schedule(Schedule::Random).case().schedule, Schedule::Random);
    /// ```
    pub fn schedule(mut self, schedule: Schedule) -> Builder {
        self.schedule = schedule;
        self
    }

    /// The case this builder runs.
    ///
    /// ```
    /// use trioxide::{sim, Schedule};
    /// let case = sim::Builder::new().seed(9).schedule(Schedule::pct(2)).case();
    /// assert_eq!(case.to_string(), "seed=9,schedule=pct2");
    /// ```
    pub fn case(self) -> Case {
        Case { seed: self.seed, schedule: self.schedule }
    }

    fn kernel_builder(self) -> crate::Builder {
        let clock = MockClock::new();
        clock.set_autojump_threshold(Some(Duration::ZERO));
        crate::Builder::new()
            .seed(self.seed)
            .schedule(self.schedule)
            .clock(clock)
            .threads_inline(true)
            .on_stall(deadlock)
    }

    /// Runs `main` to completion in simulation and returns its output.
    ///
    /// # Panics
    /// As [`trioxide::Builder::run`](crate::Builder::run).
    ///
    /// ```
    /// use std::time::Duration;
    /// use trioxide::{current_time, sim, sleep};
    /// let waited = sim::Builder::new().run(async {
    ///     let t0 = current_time();
    ///     sleep(Duration::from_secs(3600)).await.unwrap();
    ///     current_time().saturating_duration_since(t0)
    /// });
    /// assert_eq!(waited, Duration::from_secs(3600));
    /// ```
    #[track_caller]
    pub fn run<F: Future>(self, main: F) -> F::Output {
        self.run_with_trace(main).0
    }

    /// Runs `main` in simulation and returns its output, the run's report
    /// and its trace (the first 100,000 events kept).
    ///
    /// # Panics
    /// As [`trioxide::Builder::run`](crate::Builder::run).
    ///
    /// ```
    /// let ((), report, trace) = trioxide::sim::Builder::new().run_with_trace(async {});
    /// assert_eq!((report.tasks_left, trace.len()), (0, 1));
    /// ```
    #[track_caller]
    pub fn run_with_trace<F: Future>(self, main: F) -> (F::Output, RunReport, Trace) {
        let config = self.net;
        self.kernel_builder().run_with_trace(
            async move {
                if let Some(config) = config {
                    net::install(config);
                }
                main.await
            },
            KEEP_EVENTS,
        )
    }

    /// Runs the case twice, `make_main` giving each run its main future,
    /// and returns the trace if both runs traced the same events.
    ///
    /// # Panics
    /// If the traces differ: the message names the case, the index of the
    /// first differing event and both events.
    ///
    /// ```
    /// use trioxide::{checkpoint, sim, Schedule};
    /// let trace = sim::Builder::new().seed(3).schedule(Schedule::Random).check_determinism(|| async {
    ///     checkpoint().await.unwrap();
    /// });
    /// assert_eq!(trace.len(), 2);
    /// ```
    #[track_caller]
    pub fn check_determinism<F: Future>(self, mut make_main: impl FnMut() -> F) -> Trace {
        let (_, _, a) = self.run_with_trace(make_main());
        let (_, _, b) = self.run_with_trace(make_main());
        if let Some(i) = a.first_difference(&b) {
            panic!(
                "trioxide sim: {} is not deterministic: the traces first differ at event #{i}: first run {:?}, \
                 second run {:?} (hashes {:#018x} vs {:#018x}, {} vs {} events)",
                self.case(),
                a.events().get(i),
                b.events().get(i),
                a.hash(),
                b.hash(),
                a.len(),
                b.len()
            );
        }
        a
    }
}

/// The start of the panic message of a simulated run that deadlocked:
/// every task waits and nothing can wake one (no timer, no delivery of the
/// simulated network, no I/O source, no thread). The message goes on with
/// the virtual time and the waiting tasks: `trioxide sim: deadlock at 0ns:
/// every task waits and nothing can wake one: <main> (nursery), waiter
/// (parking lot)`.
///
/// ```
/// use trioxide::{sim, sync::Event};
/// let caught = std::panic::catch_unwind(|| {
///     sim::Builder::new().run(async {
///         let never = Event::new();
///         never.wait().await // nobody sets it
///     })
/// });
/// let message = *caught.unwrap_err().downcast::<String>().unwrap();
/// assert!(message.starts_with(sim::DEADLOCK));
/// assert!(message.ends_with("<main> (parking lot)"), "{message}");
/// ```
pub const DEADLOCK: &str = "trioxide sim: deadlock at ";

/// The kernel's stall hook in a simulated run: names the waiting tasks.
fn deadlock() -> ! {
    let at = crate::current_time().saturating_duration_since(crate::Instant::ZERO);
    let tasks: Vec<String> = crate::task_tree()
        .into_iter()
        .map(|t| {
            let on = if t.waiting_on.is_empty() { "?" } else { t.waiting_on };
            format!("{} ({on})", t.name)
        })
        .collect();
    panic!("{DEADLOCK}{at:?}: every task waits and nothing can wake one: {}", tasks.join(", "));
}

/// Runs `make_main`'s program twice in simulation with `seed` and the batch
/// schedule, and fails loudly if the two traces differ (see
/// [`Builder::check_determinism`]).
///
/// # Panics
/// If the traces differ, naming the first differing event.
///
/// ```
/// use std::time::Duration;
/// let trace = trioxide::sim::check_determinism(42, || async {
///     trioxide::sleep(Duration::from_millis(5)).await.unwrap();
/// });
/// assert!(trace.len() >= 2);
/// ```
#[track_caller]
pub fn check_determinism<F: Future>(seed: u64, make_main: impl FnMut() -> F) -> Trace {
    Builder::new().seed(seed).check_determinism(make_main)
}

/// The first failing case found by [`explore`]. Its `Display` (and
/// `Debug`, so `.unwrap()` shows it) is the one line that reproduces it.
///
/// ```
/// use trioxide::{sim, Schedule};
/// let f = sim::explore(0..10, Schedule::Random, |case| if case.seed == 4 { Err("boom") } else { Ok(()) }).unwrap_err();
/// assert_eq!(f.case.seed, 4);
/// assert_eq!(
///     f.to_string(),
///     "trioxide sim: failed at seed=4 schedule=random: boom; re-run with TRIOXIDE_SIM=seed=4,schedule=random"
/// );
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Failure {
    /// The failing case.
    pub case: Case,
    /// Its error or panic message, on one line.
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "trioxide sim: failed at seed={} schedule={}: {}; re-run with {SIM_ENV}={}",
            self.case.seed, self.case.schedule, self.message, self.case
        )
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Failure {}

/// Runs `check` for each seed of `seeds` under `schedule`, in order, and
/// stops at the first case that returns `Err` or panics: prints the line
/// that reproduces it to stderr and returns it. Returns the number of cases
/// run if none failed.
///
/// If [`SIM_ENV`] is set, runs exactly the case it names instead (and only
/// it), whatever `seeds` and `schedule` say.
///
/// # Panics
/// If [`SIM_ENV`] is set but malformed.
///
/// ```
/// use std::cell::Cell;
/// use std::rc::Rc;
/// use trioxide::{checkpoint, open_nursery, sim, BoxError, Schedule};
/// // A planted lost update: read, checkpoint, write back.
/// let found = sim::explore(0..200, Schedule::pct(3), |case| -> Result<(), BoxError> {
///     let c = Rc::new(Cell::new(0));
///     let c2 = c.clone();
///     case.builder().run(open_nursery(|n| async move {
///         for _ in 0..2 {
///             let c = c2.clone();
///             n.start_soon(async move {
///                 let v = c.get();
///                 checkpoint().await?;
///                 c.set(v + 1);
///                 Ok::<_, BoxError>(())
///             })?;
///         }
///         Ok::<_, BoxError>(())
///     }))?;
///     if c.get() == 2 { Ok(()) } else { Err(format!("lost update: {}", c.get()).into()) }
/// });
/// let failure: sim::Failure = found.unwrap_err();
/// assert!(failure.to_string().contains("lost update: 1; re-run with TRIOXIDE_SIM=seed="));
/// ```
pub fn explore<E: fmt::Display>(
    seeds: impl IntoIterator<Item = u64>,
    schedule: Schedule,
    mut check: impl FnMut(Case) -> Result<(), E>,
) -> Result<u64, Failure> {
    let only = match Case::from_env() {
        Ok(c) => c,
        Err(e) => panic!("trioxide sim: {e}"),
    };
    let mut run_one = |case: Case| -> Result<(), Failure> {
        let message = match catch_unwind(AssertUnwindSafe(|| check(case))) {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(panic) => match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
                (Some(s), _) => format!("panicked: {s}"),
                (_, Some(s)) => format!("panicked: {s}"),
                _ => "panicked".to_string(),
            },
        };
        let failure = Failure { case, message: message.replace('\n', " | ") };
        eprintln!("{failure}");
        Err(failure)
    };
    if let Some(case) = only {
        run_one(case)?;
        return Ok(1);
    }
    let mut n = 0;
    for seed in seeds {
        run_one(Case { seed, schedule })?;
        n += 1;
    }
    Ok(n)
}
