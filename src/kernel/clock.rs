//! Time as the runtime sees it: [`Instant`], the [`Clock`] trait, the real
//! [`SystemClock`] and the virtual [`MockClock`] for tests.

use std::cell::Cell;
use std::fmt;
use std::ops::{Add, Sub};
use std::rc::Rc;
use std::time::Duration;

use crate::kernel::error::InvalidTime;

/// A point on the runtime clock, in nanoseconds since the clock's origin.
///
/// It is not `std::time::Instant` because a [`MockClock`] must be able to make
/// up any time it likes; with the [`SystemClock`] the origin is the moment the
/// run started. [`Instant::FAR_FUTURE`] means "no deadline".
///
/// ```
/// use std::time::Duration;
/// use trioxide::Instant;
/// let t = Instant::from_nanos(1_000);
/// assert_eq!(t + Duration::from_nanos(500), Instant::from_nanos(1_500));
/// assert!(Instant::FAR_FUTURE > t + Duration::from_secs(1_000_000));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant {
    nanos: u64,
}

impl Instant {
    /// The origin of the clock: where a [`MockClock`] starts, and where
    /// negative times saturate.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trioxide::{Builder, Instant, MockClock};
    /// assert_eq!(Instant::ZERO.as_nanos(), 0);
    /// assert_eq!(Instant::ZERO - Duration::from_secs(1), Instant::ZERO); // saturates
    /// let t = Builder::new().clock(MockClock::new()).run(async { trioxide::current_time() });
    /// assert_eq!(t, Instant::ZERO);
    /// ```
    pub const ZERO: Instant = Instant { nanos: 0 };
    /// Later than any real time: a deadline that never passes. It is what
    /// adding a duration to an instant saturates at, and the deadline of a
    /// new [`CancelScope`](crate::CancelScope).
    ///
    /// ```
    /// use std::time::Duration;
    /// use trioxide::{CancelScope, Instant};
    /// assert_eq!(Instant::from_nanos(1) + Duration::MAX, Instant::FAR_FUTURE);
    /// assert_eq!(CancelScope::new().deadline(), Instant::FAR_FUTURE);
    /// assert_eq!(Instant::FAR_FUTURE.as_secs_f64(), f64::INFINITY);
    /// ```
    pub const FAR_FUTURE: Instant = Instant { nanos: u64::MAX };

    /// The instant `nanos` nanoseconds after the clock's origin. A `const
    /// fn`: deadlines can be constants.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trioxide::Instant;
    /// const ONE_SECOND: Instant = Instant::from_nanos(1_000_000_000);
    /// assert_eq!(ONE_SECOND, Instant::ZERO + Duration::from_secs(1));
    /// assert_eq!(Instant::from_nanos(u64::MAX), Instant::FAR_FUTURE);
    /// ```
    pub const fn from_nanos(nanos: u64) -> Instant {
        Instant { nanos }
    }

    /// Nanoseconds since the clock's origin (`u64::MAX` for
    /// [`FAR_FUTURE`](Instant::FAR_FUTURE)).
    ///
    /// ```
    /// use std::time::Duration;
    /// use trioxide::Instant;
    /// assert_eq!((Instant::ZERO + Duration::from_micros(3)).as_nanos(), 3_000);
    /// assert_eq!(Instant::FAR_FUTURE.as_nanos(), u64::MAX);
    /// ```
    pub const fn as_nanos(self) -> u64 {
        self.nanos
    }

    /// The instant `secs` seconds after the origin. NaN is rejected with a
    /// clear error (Trio's rule C13); `f64::INFINITY` is
    /// [`FAR_FUTURE`](Instant::FAR_FUTURE) and negative times are the origin.
    ///
    /// ```
    /// use trioxide::Instant;
    /// assert!(Instant::from_secs_f64(f64::NAN).is_err());
    /// assert_eq!(Instant::from_secs_f64(1.5).unwrap().as_nanos(), 1_500_000_000);
    /// ```
    pub fn from_secs_f64(secs: f64) -> Result<Instant, InvalidTime> {
        if secs.is_nan() {
            return Err(InvalidTime { value: secs, what: "deadline" });
        }
        if secs <= 0.0 {
            return Ok(Instant::ZERO);
        }
        let nanos = secs * 1e9;
        if nanos >= u64::MAX as f64 {
            Ok(Instant::FAR_FUTURE)
        } else {
            Ok(Instant { nanos: nanos as u64 })
        }
    }

    /// Seconds since the origin, as Trio's `current_time()` reports them;
    /// [`FAR_FUTURE`](Instant::FAR_FUTURE) is `f64::INFINITY`, the inverse
    /// of [`from_secs_f64`](Instant::from_secs_f64).
    ///
    /// ```
    /// use trioxide::Instant;
    /// assert_eq!(Instant::from_nanos(2_500_000_000).as_secs_f64(), 2.5);
    /// assert_eq!(Instant::FAR_FUTURE.as_secs_f64(), f64::INFINITY);
    /// assert_eq!(Instant::from_secs_f64(f64::INFINITY), Ok(Instant::FAR_FUTURE));
    /// ```
    pub fn as_secs_f64(self) -> f64 {
        if self == Instant::FAR_FUTURE {
            f64::INFINITY
        } else {
            self.nanos as f64 / 1e9
        }
    }

    /// The time from `earlier` to `self`, or zero if `earlier` is later
    /// (never a panic, unlike subtracting `std::time::Instant`s).
    ///
    /// ```
    /// use std::time::Duration;
    /// use trioxide::Instant;
    /// let (a, b) = (Instant::from_nanos(1_000), Instant::from_nanos(4_000));
    /// assert_eq!(b.saturating_duration_since(a), Duration::from_nanos(3_000));
    /// assert_eq!(a.saturating_duration_since(b), Duration::ZERO);
    /// ```
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.nanos.saturating_sub(earlier.nanos))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        let d = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Instant { nanos: self.nanos.saturating_add(d) }
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    fn sub(self, d: Duration) -> Instant {
        let d = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Instant { nanos: self.nanos.saturating_sub(d) }
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Instant::FAR_FUTURE {
            f.write_str("Instant(FAR_FUTURE)")
        } else {
            write!(f, "Instant({:?})", Duration::from_nanos(self.nanos))
        }
    }
}

/// A duration from seconds given as a float, rejecting negative and NaN
/// values with a clear error (Trio's rule C13). `f64::INFINITY` gives
/// `Duration::MAX`.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(trioxide::secs_f64(0.25).unwrap(), Duration::from_millis(250));
/// assert!(trioxide::secs_f64(-1.0).is_err());
/// assert!(trioxide::secs_f64(f64::NAN).is_err());
/// ```
pub fn secs_f64(secs: f64) -> Result<Duration, InvalidTime> {
    if secs.is_nan() || secs < 0.0 {
        return Err(InvalidTime { value: secs, what: "duration" });
    }
    Ok(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
}

/// Where the runtime gets the time from, and how long it may sleep.
///
/// Install one with [`Builder::clock`](crate::Builder::clock). The runtime
/// calls these on its own thread only. Only
/// [`current_time`](Clock::current_time) and
/// [`deadline_to_sleep_time`](Clock::deadline_to_sleep_time) are required.
///
/// A clock that runs ten times faster than real time:
///
/// ```
/// use std::time::Duration;
/// use trioxide::{current_time, sleep, Builder, Clock, Instant};
///
/// struct Fast(std::time::Instant);
/// impl Clock for Fast {
///     fn current_time(&self) -> Instant {
///         Instant::from_nanos(self.0.elapsed().as_nanos() as u64 * 10)
///     }
///     fn deadline_to_sleep_time(&self, deadline: Instant) -> Option<Duration> {
///         (deadline != Instant::FAR_FUTURE)
///             .then(|| deadline.saturating_duration_since(self.current_time()) / 10)
///     }
/// }
///
/// let real = std::time::Instant::now();
/// let slept = Builder::new().clock(Fast(std::time::Instant::now())).run(async {
///     let t0 = current_time();
///     sleep(Duration::from_millis(200)).await.unwrap(); // 20 ms of real time
///     current_time().saturating_duration_since(t0)
/// });
/// assert!(slept >= Duration::from_millis(200));
/// assert!(real.elapsed() < Duration::from_millis(200));
/// ```
pub trait Clock {
    /// Called once when the run starts, before the main task first runs:
    /// where a clock whose origin is "the start of the run" records it.
    ///
    /// ```
    /// use std::cell::Cell;
    /// use std::rc::Rc;
    /// use std::time::Duration;
    /// use trioxide::{Builder, Clock, Instant, MockClock};
    ///
    /// struct Counting(MockClock, Rc<Cell<u32>>);
    /// impl Clock for Counting {
    ///     fn start_clock(&self) { self.1.set(self.1.get() + 1) }
    ///     fn current_time(&self) -> Instant { self.0.current_time() }
    ///     fn deadline_to_sleep_time(&self, d: Instant) -> Option<Duration> {
    ///         self.0.deadline_to_sleep_time(d)
    ///     }
    /// }
    ///
    /// let starts = Rc::new(Cell::new(0));
    /// let seen = Builder::new()
    ///     .clock(Counting(MockClock::new(), starts.clone()))
    ///     .run({ let s = starts.clone(); async move { s.get() } });
    /// assert_eq!(seen, 1); // already started when the main task runs
    /// assert_eq!(starts.get(), 1); // and only once
    /// ```
    fn start_clock(&self) {}
    /// The current time. Inside a run, read it with
    /// [`current_time`](crate::current_time).
    ///
    /// ```
    /// use std::time::Duration;
    /// use trioxide::{Clock, Instant, MockClock};
    /// let clock = MockClock::new();
    /// assert_eq!(clock.current_time(), Instant::ZERO); // stands still
    /// clock.jump(Duration::from_secs(5));
    /// assert_eq!(clock.current_time(), Instant::ZERO + Duration::from_secs(5));
    /// ```
    fn current_time(&self) -> Instant;
    /// How long to block in the I/O wait to reach `deadline` (`None`:
    /// forever, until an event or a wake-up from another thread; zero: the
    /// deadline has passed).
    ///
    /// ```
    /// use std::time::Duration;
    /// use trioxide::{Clock, Instant, MockClock, SystemClock};
    /// let real = SystemClock::new();
    /// assert_eq!(real.deadline_to_sleep_time(Instant::FAR_FUTURE), None);
    /// assert_eq!(real.deadline_to_sleep_time(Instant::ZERO), Some(Duration::ZERO));
    /// let mock = MockClock::new(); // standing still: a future deadline never comes
    /// assert_eq!(mock.deadline_to_sleep_time(Instant::from_nanos(1)), None);
    /// mock.set_rate(2.0); // twice real speed: half the virtual time, in real time
    /// let d = mock.deadline_to_sleep_time(Instant::ZERO + Duration::from_secs(10)).unwrap();
    /// assert!(d <= Duration::from_secs(5) && d > Duration::from_secs(4));
    /// ```
    fn deadline_to_sleep_time(&self, deadline: Instant) -> Option<Duration>;
    /// If set, when every task has been blocked this long (real time), the
    /// runtime asks the clock to [`autojump`](Clock::autojump) to the next
    /// deadline instead of sleeping. `None` (the default): never.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trioxide::{Clock, MockClock, SystemClock};
    /// assert_eq!(SystemClock::new().autojump_threshold(), None);
    /// let mock = MockClock::new();
    /// assert_eq!(mock.autojump_threshold(), None);
    /// mock.set_autojump_threshold(Some(Duration::ZERO));
    /// assert_eq!(mock.autojump_threshold(), Some(Duration::ZERO));
    /// ```
    fn autojump_threshold(&self) -> Option<Duration> {
        None
    }
    /// Moves virtual time forward to `deadline` (only called when
    /// [`autojump_threshold`](Clock::autojump_threshold) is set). The
    /// default does nothing.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trioxide::{Clock, Instant, MockClock};
    /// let clock = MockClock::new();
    /// let deadline = Instant::ZERO + Duration::from_secs(7);
    /// clock.autojump(deadline);
    /// assert_eq!(clock.current_time(), deadline);
    /// clock.autojump(Instant::ZERO); // never backwards
    /// assert_eq!(clock.current_time(), deadline);
    /// ```
    fn autojump(&self, _deadline: Instant) {}
}

/// The real monotonic clock; its origin is the moment it was created. The
/// runtime uses one unless [`Builder::clock`](crate::Builder::clock) says
/// otherwise.
///
/// ```
/// use std::time::Duration;
/// use trioxide::{current_time, sleep, Builder, SystemClock};
/// let elapsed = Builder::new().clock(SystemClock::new()).run(async {
///     let t0 = current_time();
///     sleep(Duration::from_millis(5)).await.unwrap(); // really waits
///     current_time().saturating_duration_since(t0)
/// });
/// assert!(elapsed >= Duration::from_millis(5));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: std::time::Instant,
}

impl SystemClock {
    /// A clock whose origin is now: it reads (about) zero at first.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trioxide::{Clock, SystemClock};
    /// let clock = SystemClock::new();
    /// let t0 = clock.current_time();
    /// assert!(t0.as_nanos() < Duration::from_secs(1).as_nanos() as u64);
    /// std::thread::sleep(Duration::from_millis(2));
    /// assert!(clock.current_time().saturating_duration_since(t0) >= Duration::from_millis(2));
    /// ```
    pub fn new() -> SystemClock {
        SystemClock { origin: std::time::Instant::now() }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn current_time(&self) -> Instant {
        let d = self.origin.elapsed();
        Instant::from_nanos(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    fn deadline_to_sleep_time(&self, deadline: Instant) -> Option<Duration> {
        if deadline == Instant::FAR_FUTURE {
            None
        } else {
            Some(deadline.saturating_duration_since(self.current_time()))
        }
    }
}

/// A virtual clock for tests: time stands still unless you
/// [`jump`](MockClock::jump) it, give it a [`rate`](MockClock::set_rate), or
/// turn on autojump, which skips straight to the next deadline whenever every
/// task is blocked. Timeout tests then take no real time.
///
/// Clones share one clock: keep one to jump and give one to the builder.
///
/// ```
/// use std::time::Duration;
/// use trioxide::{Builder, MockClock, sleep, current_time, Instant};
/// let clock = MockClock::new();
/// clock.set_autojump_threshold(Some(Duration::ZERO));
/// let t = Builder::new().clock(clock.clone()).run(async {
///     sleep(Duration::from_secs(3600)).await.unwrap(); // returns at once
///     current_time()
/// });
/// assert_eq!(t, Instant::ZERO + Duration::from_secs(3600));
/// ```
#[derive(Clone, Default)]
pub struct MockClock {
    inner: Rc<MockInner>,
}

impl std::fmt::Debug for MockClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockClock")
            .field("now", &self.current_time())
            .field("rate", &self.inner.rate.get())
            .field("autojump_threshold", &self.inner.autojump.get())
            .finish()
    }
}

#[derive(Default)]
struct MockInner {
    /// Virtual time at `real_base`.
    virtual_base: Cell<u64>,
    real_base: Cell<Option<std::time::Instant>>,
    rate: Cell<f64>,
    autojump: Cell<Option<Duration>>,
}

impl MockClock {
    /// A clock at time zero, standing still, without autojump. Without
    /// autojump, a task sleeping on it waits until another task
    /// [`jump`](MockClock::jump)s it.
    ///
    /// ```
    /// use trioxide::{Builder, Clock, Instant, MockClock};
    /// let clock = MockClock::new();
    /// assert_eq!(clock.current_time(), Instant::ZERO);
    /// assert_eq!(clock.autojump_threshold(), None);
    /// let t = Builder::new().clock(clock).run(async { trioxide::current_time() });
    /// assert_eq!(t, Instant::ZERO);
    /// ```
    pub fn new() -> MockClock {
        MockClock::default()
    }

    /// Moves the clock forward by `d`. Deadlines it passes fire at the next
    /// scheduler pass; there is no jumping backwards.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trioxide::{current_time, open_nursery, sleep, wait_all_tasks_blocked};
    /// use trioxide::{BoxError, Builder, Instant, MockClock};
    /// let clock = MockClock::new(); // no autojump: only jumps move time
    /// let handle = clock.clone();
    /// Builder::new().clock(clock).run(open_nursery(|n| async move {
    ///     n.start_soon(async {
    ///         sleep(Duration::from_secs(60)).await?;
    ///         assert_eq!(current_time(), Instant::ZERO + Duration::from_secs(90));
    ///         Ok::<_, BoxError>(())
    ///     })?;
    ///     wait_all_tasks_blocked().await?; // the sleeper is waiting
    ///     handle.jump(Duration::from_secs(30)); // not yet due
    ///     wait_all_tasks_blocked().await?;
    ///     handle.jump(Duration::from_secs(60)); // past its deadline: it wakes
    ///     Ok::<_, BoxError>(())
    /// })).unwrap();
    /// ```
    pub fn jump(&self, d: Duration) {
        let now = self.current_time();
        self.rebase(now + d);
    }

    /// How fast virtual time runs against real time (0.0, the default,
    /// stands still). Time already passed is kept: the new rate applies
    /// from now on.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trioxide::{Clock, Instant, MockClock};
    /// let clock = MockClock::new();
    /// clock.set_rate(1000.0); // a real millisecond is a virtual second
    /// std::thread::sleep(Duration::from_millis(2));
    /// clock.set_rate(0.0); // stop: the time reached stays
    /// let t = clock.current_time();
    /// assert!(t >= Instant::ZERO + Duration::from_secs(2));
    /// std::thread::sleep(Duration::from_millis(2));
    /// assert_eq!(clock.current_time(), t);
    /// ```
    ///
    /// # Panics
    /// If `rate` is negative or NaN: "trioxide::MockClock::set_rate needs
    /// a rate >= 0", at the caller's line.
    #[track_caller]
    pub fn set_rate(&self, rate: f64) {
        if rate.is_nan() || rate < 0.0 {
            bad_rate(rate);
        }
        let now = self.current_time();
        self.inner.rate.set(rate);
        self.rebase(now);
    }

    /// Turns autojump on (`Some(threshold)`) or off (`None`). With it on,
    /// once every task has been blocked for `threshold` of real time, the
    /// clock jumps to the next deadline: timeouts in tests take no time.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trioxide::{fail_after, sleep_forever, BoxError, Builder, MockClock, TooSlow};
    /// let clock = MockClock::new();
    /// clock.set_autojump_threshold(Some(Duration::ZERO));
    /// let real = std::time::Instant::now();
    /// let r: Result<(), BoxError> = Builder::new().clock(clock).run(fail_after(Duration::from_secs(3600), async {
    ///     sleep_forever().await?;
    ///     Ok(())
    /// }));
    /// assert!(r.unwrap_err().is::<TooSlow>());
    /// assert!(real.elapsed() < Duration::from_secs(60)); // an hour, at once
    /// ```
    pub fn set_autojump_threshold(&self, threshold: Option<Duration>) {
        self.inner.autojump.set(threshold);
    }

    fn rebase(&self, now: Instant) {
        self.inner.virtual_base.set(now.as_nanos());
        self.inner.real_base.set(Some(std::time::Instant::now()));
    }
}

/// The panic of [`MockClock::set_rate`], out of line.
#[cold]
#[inline(never)]
#[track_caller]
fn bad_rate(rate: f64) -> ! {
    panic!("trioxide::MockClock::set_rate needs a rate >= 0, got {rate}")
}

impl Clock for MockClock {
    fn current_time(&self) -> Instant {
        let base = self.inner.virtual_base.get();
        let rate = self.inner.rate.get();
        if rate == 0.0 {
            return Instant::from_nanos(base);
        }
        let real = self.inner.real_base.get().map_or(0.0, |t| t.elapsed().as_nanos() as f64);
        Instant::from_nanos(base.saturating_add((real * rate) as u64))
    }

    fn deadline_to_sleep_time(&self, deadline: Instant) -> Option<Duration> {
        let now = self.current_time();
        if deadline <= now {
            // Already due (e.g. after a manual jump): don't sleep at all.
            return Some(Duration::ZERO);
        }
        let rate = self.inner.rate.get();
        if rate == 0.0 || deadline == Instant::FAR_FUTURE {
            return None;
        }
        let virt = deadline.saturating_duration_since(now);
        Some(Duration::from_secs_f64(virt.as_secs_f64() / rate))
    }

    fn autojump_threshold(&self) -> Option<Duration> {
        self.inner.autojump.get()
    }

    fn autojump(&self, deadline: Instant) {
        if deadline > self.current_time() && deadline != Instant::FAR_FUTURE {
            self.rebase(deadline);
        }
    }
}

impl Clock for Rc<dyn Clock> {
    fn start_clock(&self) {
        (**self).start_clock()
    }
    fn current_time(&self) -> Instant {
        (**self).current_time()
    }
    fn deadline_to_sleep_time(&self, deadline: Instant) -> Option<Duration> {
        (**self).deadline_to_sleep_time(deadline)
    }
    fn autojump_threshold(&self) -> Option<Duration> {
        (**self).autojump_threshold()
    }
    fn autojump(&self, deadline: Instant) {
        (**self).autojump(deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mock_clock_stands_still_until_jumped() {
        let c = MockClock::new();
        assert_eq!(c.current_time(), Instant::ZERO);
        c.jump(Duration::from_secs(2));
        assert_eq!(c.current_time(), Instant::ZERO + Duration::from_secs(2));
        // Standing still, it can never reach a future deadline by itself...
        assert_eq!(c.deadline_to_sleep_time(Instant::ZERO + Duration::from_secs(3)), None);
        // ...but a deadline already passed needs no sleep at all.
        assert_eq!(c.deadline_to_sleep_time(Instant::from_nanos(5)), Some(Duration::ZERO));
    }

    #[test]
    fn secs_f64_rejects_negative_and_nan() {
        assert!(secs_f64(-0.5).is_err());
        assert!(secs_f64(f64::NAN).is_err());
        assert_eq!(secs_f64(f64::INFINITY).unwrap(), Duration::MAX);
    }
}
