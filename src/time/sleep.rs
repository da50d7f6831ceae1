//! Sleeping and reading the clock.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::kernel::clock::Instant;
use crate::kernel::error::Cancelled;
use crate::kernel::Core;

/// The current time on the run's clock.
///
/// # Panics
/// Outside [`run`](crate::run): "trioxide::current_time must be called
/// from inside trioxide::run", at the caller's line.
///
/// ```
/// use std::time::Duration;
/// use trioxide::{current_time, sleep, Builder, MockClock};
/// let clock = MockClock::new();
/// clock.set_autojump_threshold(Some(Duration::ZERO));
/// Builder::new().clock(clock).run(async {
///     let t0 = current_time();
///     sleep(Duration::from_secs(90)).await.unwrap();
///     assert_eq!(current_time().saturating_duration_since(t0), Duration::from_secs(90));
/// });
/// ```
#[track_caller]
pub fn current_time() -> Instant {
    Core::current_for("trioxide::current_time").now()
}

/// Sleeps for `duration` (measured from the first poll). A checkpoint: it
/// reports `Err(Cancelled)` if cancelled before or while sleeping, and
/// `sleep(Duration::ZERO)` still lets other tasks run (rule C10).
///
/// ```
/// use std::time::Duration;
/// trioxide::run(async {
///     trioxide::sleep(Duration::from_millis(1)).await
/// }).unwrap();
/// ```
pub fn sleep(duration: Duration) -> Sleep {
    Sleep { when: When::After(duration), state: SleepState::New }
}

/// Sleeps until the clock reaches `deadline`; a checkpoint like [`sleep`].
///
/// ```
/// use std::time::Duration;
/// use trioxide::{current_time, sleep_until, Builder, MockClock};
/// let clock = MockClock::new();
/// clock.set_autojump_threshold(Some(Duration::ZERO));
/// Builder::new().clock(clock).run(async {
///     let deadline = current_time() + Duration::from_secs(10);
///     sleep_until(deadline).await.unwrap();
///     assert_eq!(current_time(), deadline);
///     sleep_until(deadline).await.unwrap(); // in the past: a checkpoint, no wait
///     assert_eq!(current_time(), deadline);
/// });
/// ```
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep { when: When::At(deadline), state: SleepState::New }
}

/// Sleeps until cancelled. The only way out is `Err(Cancelled)`, so
/// `sleep_forever().await?` ends the function.
///
/// ```
/// use trioxide::{move_on_after, sleep_forever, Cancelled, Builder, MockClock};
/// use std::time::Duration;
/// let clock = MockClock::new();
/// clock.set_autojump_threshold(Some(Duration::ZERO));
/// let r = Builder::new().clock(clock).run(move_on_after(Duration::from_secs(1), async {
///     sleep_forever().await?;
///     Ok::<(), Cancelled>(())
/// }));
/// assert_eq!(r, Ok(None));
/// ```
pub fn sleep_forever() -> SleepForever {
    SleepForever { done: false }
}

#[derive(Debug, Clone, Copy)]
enum When {
    After(Duration),
    At(Instant),
}

#[derive(Debug)]
enum SleepState {
    New,
    /// The deadline had already passed: yielded once, like a checkpoint.
    Yielded,
    /// Waiting on a timer (`None`: no deadline, waiting for cancellation).
    Waiting(Option<usize>),
    Done,
}

/// The future of [`sleep`] and [`sleep_until`].
///
/// ```
/// use std::time::Duration;
/// use trioxide::{move_on_after, sleep, Builder, Cancelled, MockClock};
/// let clock = MockClock::new();
/// clock.set_autojump_threshold(Some(Duration::ZERO));
/// let r = Builder::new().clock(clock).run(async {
///     let nap: trioxide::Sleep = sleep(Duration::from_secs(5)); // counts from its first poll
///     move_on_after(Duration::from_secs(1), async { nap.await?; Ok::<_, Cancelled>("woke") }).await
/// });
/// assert_eq!(r, Ok(None)); // cancelled after 1 s of its 5
/// ```
#[derive(Debug)]
#[must_use = "a sleep does nothing unless awaited"]
pub struct Sleep {
    when: When,
    state: SleepState,
}

impl Future for Sleep {
    type Output = Result<(), Cancelled>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let core = Core::current();
        match self.state {
            SleepState::New => {
                if core.is_cancelled() {
                    self.state = SleepState::Done;
                    return Poll::Ready(Err(Cancelled));
                }
                let (deadline, now) = match self.when {
                    When::After(d) if d.is_zero() => (Instant::ZERO, Instant::ZERO),
                    When::After(d) => {
                        let now = core.now();
                        (now + d, now)
                    }
                    When::At(Instant::FAR_FUTURE) => (Instant::FAR_FUTURE, Instant::ZERO),
                    When::At(t) => (t, core.now()),
                };
                if deadline == Instant::FAR_FUTURE {
                    self.state = SleepState::Waiting(None);
                } else if deadline <= now {
                    self.state = SleepState::Yielded;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                } else {
                    let key = core.add_wake_timer(deadline, cx.waker().clone());
                    self.state = SleepState::Waiting(Some(key));
                }
                core.set_waiting_on("sleep");
                Poll::Pending
            }
            SleepState::Yielded => {
                self.state = SleepState::Done;
                if core.is_cancelled() {
                    Poll::Ready(Err(Cancelled))
                } else {
                    Poll::Ready(Ok(()))
                }
            }
            SleepState::Waiting(timer) => {
                // A timer that already fired wins over a cancellation that
                // came later: the result was delivered (rule C15).
                if let Some(key) = timer {
                    if core.take_fired_timer(key) {
                        self.state = SleepState::Done;
                        return Poll::Ready(Ok(()));
                    }
                    if !core.is_cancelled() {
                        core.set_timer_waker(key, cx.waker());
                    }
                }
                if core.is_cancelled() {
                    if let Some(key) = timer {
                        core.remove_timer(key);
                    }
                    self.state = SleepState::Done;
                    return Poll::Ready(Err(Cancelled));
                }
                core.set_waiting_on("sleep");
                Poll::Pending
            }
            SleepState::Done => panic!("sleep polled after completion"),
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let SleepState::Waiting(Some(key)) = self.state {
            if let Some(core) = Core::try_current() {
                core.remove_timer(key);
            }
        }
    }
}

/// The future of [`sleep_forever`]: a `sleep_until(Instant::FAR_FUTURE)`
/// that needs no timer, so it keeps only its state (one byte, which is
/// what a parked task's future costs when it parks on this).
///
/// ```
/// use std::time::Duration;
/// use trioxide::{move_on_after, sleep_forever, Builder, Cancelled, MockClock};
/// let clock = MockClock::new();
/// clock.set_autojump_threshold(Some(Duration::ZERO));
/// let r = Builder::new().clock(clock).run(move_on_after(Duration::from_secs(1), async {
///     sleep_forever().await?; // only Err(Cancelled) gets out
///     Ok::<_, Cancelled>(())
/// }));
/// assert_eq!(r, Ok(None));
/// ```
#[derive(Debug)]
#[must_use = "a sleep does nothing unless awaited"]
pub struct SleepForever {
    done: bool,
}

impl Future for SleepForever {
    type Output = Result<Infallible, Cancelled>;

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
        assert!(!self.done, "sleep polled after completion");
        let core = Core::current();
        // Cancellation wakes the whole task (rule C15): no waker to keep.
        if core.is_cancelled() {
            self.done = true;
            return Poll::Ready(Err(Cancelled));
        }
        core.set_waiting_on("sleep");
        Poll::Pending
    }
}
