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
    /// The origin of the clock.
    pub const ZERO: Instant = Instant { nanos: 0 };
    /// Later than any real time: a deadline that never passes.
    pub const FAR_FUTURE: Instant = Instant { nanos: u64::MAX };

    /// The instant `nanos` nanoseconds after the clock's origin.
    pub const fn from_nanos(nanos: u64) -> Instant {
        Instant { nanos }
    }

    /// Nanoseconds since the clock's origin.
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

    /// Seconds since the origin, as Trio's `current_time()` reports them.
    pub fn as_secs_f64(self) -> f64 {
        if self == Instant::FAR_FUTURE {
            f64::INFINITY
        } else {
            self.nanos as f64 / 1e9
        }
    }

    /// The time from `earlier` to `self`, or zero if `earlier` is later.
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
/// calls these on its own thread only.
pub trait Clock {
    /// Called once when the run starts.
    fn start_clock(&self) {}
    /// The current time.
    fn current_time(&self) -> Instant;
    /// How long to block in the I/O wait to reach `deadline` (`None`: forever).
    fn deadline_to_sleep_time(&self, deadline: Instant) -> Option<Duration>;
    /// If set, when every task has been blocked this long (real time), the
    /// runtime asks the clock to [`autojump`](Clock::autojump) to the next
    /// deadline instead of sleeping.
    fn autojump_threshold(&self) -> Option<Duration> {
        None
    }
    /// Moves virtual time forward to `deadline` (only called when
    /// [`autojump_threshold`](Clock::autojump_threshold) is set).
    fn autojump(&self, _deadline: Instant) {}
}

/// The real monotonic clock; its origin is the moment it was created.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: std::time::Instant,
}

impl SystemClock {
    /// A clock whose origin is now.
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
    /// A clock at time zero, standing still, without autojump.
    pub fn new() -> MockClock {
        MockClock::default()
    }

    /// Moves the clock forward by `d`.
    pub fn jump(&self, d: Duration) {
        let now = self.current_time();
        self.rebase(now + d);
    }

    /// How fast virtual time runs against real time (0.0, the default,
    /// stands still).
    ///
    /// # Panics
    /// If `rate` is negative or NaN.
    pub fn set_rate(&self, rate: f64) {
        assert!(rate >= 0.0, "MockClock rate must be >= 0, got {rate}");
        let now = self.current_time();
        self.inner.rate.set(rate);
        self.rebase(now);
    }

    /// Turns autojump on (`Some(threshold)`) or off (`None`).
    pub fn set_autojump_threshold(&self, threshold: Option<Duration>) {
        self.inner.autojump.set(threshold);
    }

    fn rebase(&self, now: Instant) {
        self.inner.virtual_base.set(now.as_nanos());
        self.inner.real_base.set(Some(std::time::Instant::now()));
    }
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
