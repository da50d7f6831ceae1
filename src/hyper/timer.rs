//! hyper's timer on the run's clock.
//!
//! hyper asks for a `Send + Sync` sleep, and trioxide's timers live in the
//! run's thread-local core. [`HyperSleep`] therefore holds plain data
//! only: its deadline, the key of the timer it armed and the run that key
//! belongs to, and the waker it was last polled with. It reaches the timer
//! table through the thread's current run on each poll (and in `reset` and
//! `drop`), and uses a key only in the run that issued it. So it is
//! `Send + Sync` by construction, with no `unsafe`: whatever thread it is
//! moved to, the worst that can happen is a timer it cannot disarm (see
//! [`HyperSleep`]).

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::kernel::clock::Instant;
use crate::kernel::Core;

/// The pairing of hyper's clock (`std::time::Instant`) with the run's: an
/// instant of each, read together at the first use in a run. Both advance
/// from there at the run's pace, so under a [`MockClock`](crate::MockClock)
/// hyper's clock is virtual too.
#[derive(Clone, Copy)]
struct Anchor {
    run: u64,
    std: std::time::Instant,
    run_time: Instant,
}

thread_local! {
    static ANCHOR: Cell<Option<Anchor>> = const { Cell::new(None) };
}

fn anchor(core: &Core) -> Anchor {
    ANCHOR.with(|a| match a.get() {
        Some(anchor) if anchor.run == core.run_id() => anchor,
        _ => {
            let anchor = Anchor { run: core.run_id(), std: std::time::Instant::now(), run_time: core.now() };
            a.set(Some(anchor));
            anchor
        }
    })
}

/// A run instant as hyper's clock shows it.
fn to_std(core: &Core, t: Instant) -> std::time::Instant {
    let a = anchor(core);
    if t >= a.run_time {
        a.std.checked_add(t.saturating_duration_since(a.run_time)).unwrap_or(a.std)
    } else {
        a.std.checked_sub(a.run_time.saturating_duration_since(t)).unwrap_or(a.std)
    }
}

/// A deadline on hyper's clock as a run instant.
fn to_run(core: &Core, deadline: std::time::Instant) -> Instant {
    let a = anchor(core);
    match deadline.checked_duration_since(a.std) {
        Some(ahead) => a.run_time + ahead,
        None => a.run_time - a.std.duration_since(deadline),
    }
}

/// hyper's timer (`hyper::rt::Timer`) on the clock of the run it is used
/// in, so `header_read_timeout`, HTTP/2 keep-alive pings and the other
/// hyper timeouts follow a [`MockClock`](crate::MockClock) in tests.
///
/// Its `now()` is the run's clock seen as a `std::time::Instant` (paired
/// with the real one at the first use in the run), which hyper (1.12 and
/// later) computes its deadlines from; so a deadline `timeout` ahead fires
/// exactly `timeout` later on the run's clock. Outside a run, `now()` is
/// `std::time::Instant::now()`.
///
/// Its sleeps ([`HyperSleep`]) are plain timers, not checkpoints: they
/// ignore cancellation (a cancelled hyper connection learns it from its
/// I/O) and do not yield when their deadline has passed.
///
/// ```
/// use std::time::Duration;
/// use hyper::rt::Timer;
/// use trioxide::hyper::HyperTimer;
/// use trioxide::{current_time, Builder, MockClock};
/// let clock = MockClock::new();
/// clock.set_autojump_threshold(Some(Duration::ZERO));
/// Builder::new().clock(clock).run(async {
///     let timer = HyperTimer::new();
///     let t0 = current_time();
///     timer.sleep(Duration::from_secs(30)).await; // virtual: takes no real time
///     assert_eq!(current_time().saturating_duration_since(t0), Duration::from_secs(30));
///     let deadline = timer.now() + Duration::from_secs(5);
///     timer.sleep_until(deadline).await;
///     assert_eq!(current_time().saturating_duration_since(t0), Duration::from_secs(35));
///     assert_eq!(timer.now(), deadline);
/// });
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct HyperTimer {
    _private: (),
}

impl HyperTimer {
    /// The timer. It holds nothing: every use goes to the current thread's
    /// run, so one value serves any run.
    ///
    /// ```
    /// use trioxide::hyper::{HyperTimer, NurseryExecutor};
    /// use trioxide::{open_nursery, run, BoxError};
    /// run(open_nursery(|n| async move {
    ///     let mut builder = hyper_util::server::conn::auto::Builder::new(NurseryExecutor::new(&n));
    ///     builder.http1().timer(HyperTimer::new()).header_read_timeout(std::time::Duration::from_secs(10));
    ///     builder.http2().timer(HyperTimer::new());
    ///     Ok::<_, BoxError>(())
    /// })).unwrap();
    /// ```
    pub fn new() -> HyperTimer {
        HyperTimer { _private: () }
    }
}

impl ::hyper::rt::Timer for HyperTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn ::hyper::rt::Sleep>> {
        let now = ::hyper::rt::Timer::now(self);
        // Past `std::time::Instant`'s range: never (a day short of it is
        // as good).
        let deadline = now.checked_add(duration).unwrap_or_else(|| far_future(now));
        Box::pin(HyperSleep::until(deadline))
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn ::hyper::rt::Sleep>> {
        Box::pin(HyperSleep::until(deadline))
    }

    fn now(&self) -> std::time::Instant {
        match Core::try_current() {
            Some(core) => to_std(core, core.now()),
            None => std::time::Instant::now(),
        }
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn ::hyper::rt::Sleep>>, new_deadline: std::time::Instant) {
        match sleep.as_mut().downcast_mut_pin::<HyperSleep>() {
            Some(ours) => ours.reset(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// The latest instant within a century of `now` that `std` can represent.
fn far_future(now: std::time::Instant) -> std::time::Instant {
    let mut ahead = Duration::from_secs(100 * 365 * 86_400);
    loop {
        if let Some(t) = now.checked_add(ahead) {
            return t;
        }
        ahead /= 2;
    }
}

/// The timer a [`HyperSleep`] armed: a key into the timer table of run
/// `run`, meaningless in any other.
#[derive(Debug, Clone, Copy)]
struct Armed {
    run: u64,
    key: usize,
}

/// The sleep of [`HyperTimer`]: completes when the run's clock reaches its
/// deadline.
///
/// It is `Send + Sync`, as hyper requires, because it holds only plain
/// data (the deadline, the timer key and the id of the run that issued
/// it, a `Waker`); the thread-local timer table is reached through the
/// current run at each poll. A key is used only in the run that issued
/// it, so a sleep moved to another thread or run cannot touch a timer
/// that is not its own: polled there, it arms a timer in that run;
/// dropped there, it leaves its old timer in the old run, which drops it
/// when it ends (or, if that run goes on, keeps it until it fires and
/// counts it in [`RunReport::timers_left`](crate::RunReport)).
///
/// # Panics
/// Polled outside a trioxide run: "trioxide::hyper::HyperSleep must be
/// polled inside trioxide::run".
///
/// ```
/// use std::time::Duration;
/// use trioxide::hyper::HyperSleep;
/// use trioxide::{current_time, Builder, MockClock};
/// fn send_sync<T: Send + Sync>(_: &T) {}
/// let clock = MockClock::new();
/// clock.set_autojump_threshold(Some(Duration::ZERO));
/// Builder::new().clock(clock).run(async {
///     let t0 = current_time();
///     let deadline = hyper::rt::Timer::now(&trioxide::hyper::HyperTimer::new()) + Duration::from_millis(250);
///     let sleep = HyperSleep::until(deadline);
///     send_sync(&sleep);
///     sleep.await;
///     assert_eq!(current_time().saturating_duration_since(t0), Duration::from_millis(250));
/// });
/// ```
#[derive(Debug)]
#[must_use = "a sleep does nothing unless awaited"]
pub struct HyperSleep {
    deadline: std::time::Instant,
    armed: Option<Armed>,
    /// The waker of the last poll, to re-arm with when `reset` moves the
    /// deadline of a sleep hyper is not polling right now.
    waker: Option<Waker>,
}

impl HyperSleep {
    /// A sleep until `deadline` on hyper's clock ([`HyperTimer`]'s
    /// `now()`), which is the run's clock.
    ///
    /// ```
    /// use hyper::rt::Timer;
    /// use trioxide::hyper::{HyperSleep, HyperTimer};
    /// trioxide::run(async {
    ///     let past = HyperTimer::new().now();
    ///     HyperSleep::until(past).await; // the deadline has passed: at once
    /// });
    /// ```
    pub fn until(deadline: std::time::Instant) -> HyperSleep {
        HyperSleep { deadline, armed: None, waker: None }
    }

    /// The deadline, on hyper's clock.
    ///
    /// ```
    /// use trioxide::hyper::HyperSleep;
    /// let at = std::time::Instant::now();
    /// assert_eq!(HyperSleep::until(at).deadline(), at);
    /// ```
    pub fn deadline(&self) -> std::time::Instant {
        self.deadline
    }

    /// Moves the deadline (hyper's `Timer::reset`). A sleep that is
    /// waiting stays armed: the task that polled it last is woken at the
    /// new deadline (at once if it has passed), without a poll in between.
    ///
    /// ```
    /// use std::pin::pin;
    /// use std::time::Duration;
    /// use hyper::rt::Timer;
    /// use trioxide::hyper::{HyperSleep, HyperTimer};
    /// use trioxide::{current_time, Builder, MockClock};
    /// let clock = MockClock::new();
    /// clock.set_autojump_threshold(Some(Duration::ZERO));
    /// Builder::new().clock(clock).run(async {
    ///     let t0 = current_time();
    ///     let now = HyperTimer::new().now();
    ///     let mut sleep = pin!(HyperSleep::until(now + Duration::from_secs(60)));
    ///     sleep.as_mut().reset(now + Duration::from_secs(2));
    ///     sleep.await;
    ///     assert_eq!(current_time().saturating_duration_since(t0), Duration::from_secs(2));
    /// });
    /// ```
    pub fn reset(self: Pin<&mut Self>, deadline: std::time::Instant) {
        let this = self.get_mut();
        this.deadline = deadline;
        let core = Core::try_current();
        if let Some(armed) = this.armed.take() {
            if let Some(core) = core.filter(|core| core.run_id() == armed.run) {
                core.remove_timer(armed.key);
            }
        }
        // Never polled: the first poll arms it.
        let (Some(core), Some(waker)) = (core, &this.waker) else { return };
        let at = to_run(core, deadline);
        if at <= core.now() {
            waker.wake_by_ref();
        } else if at != Instant::FAR_FUTURE {
            let key = core.add_wake_timer(at, waker.clone());
            this.armed = Some(Armed { run: core.run_id(), key });
        }
    }
}

impl Future for HyperSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let Some(core) = Core::try_current() else {
            panic!("trioxide::hyper::HyperSleep must be polled inside trioxide::run");
        };
        match &mut this.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        if let Some(armed) = this.armed {
            if armed.run == core.run_id() {
                if core.take_fired_timer(armed.key) {
                    this.armed = None;
                    return Poll::Ready(());
                }
                core.set_timer_waker(armed.key, cx.waker());
                return Poll::Pending;
            }
            // Armed in another run: that key means nothing here.
            this.armed = None;
        }
        let at = to_run(core, this.deadline);
        if at <= core.now() {
            return Poll::Ready(());
        }
        if at != Instant::FAR_FUTURE {
            let key = core.add_wake_timer(at, cx.waker().clone());
            this.armed = Some(Armed { run: core.run_id(), key });
        }
        Poll::Pending
    }
}

impl Drop for HyperSleep {
    fn drop(&mut self) {
        if let Some(armed) = self.armed {
            if let Some(core) = Core::try_current().filter(|core| core.run_id() == armed.run) {
                core.remove_timer(armed.key);
            }
        }
    }
}

impl ::hyper::rt::Sleep for HyperSleep {}
