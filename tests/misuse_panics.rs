//! Panics of misuse name the operation and point at the caller's line:
//! `#[track_caller]` from the public function down to the kernel's
//! `Core::current_for`, so the location a panic hook sees is in this file.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::Once;
use std::time::Duration;

use trioxide::sync::{Borrower, CapacityLimiter, Condition, Lock, ParkingLot};
use trioxide::testing::memory_stream_one_way_pair;
use trioxide::{BufferedReceiveStream, Instrument, TaskId};

/// What the panic hook saw: file, line, message.
type Seen = (String, u32, String);

thread_local! {
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
    static SEEN: RefCell<Option<Seen>> = const { RefCell::new(None) };
}

/// Runs `f`, which must panic, and returns where and with what message,
/// as the panic hook reports it (the first panic only: a panic that a run
/// resumes in its caller is not reported again).
fn panic_site(f: impl FnOnce()) -> Seen {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !CAPTURING.with(Cell::get) {
                return previous(info);
            }
            let msg = match (info.payload().downcast_ref::<String>(), info.payload().downcast_ref::<&str>()) {
                (Some(s), _) => s.clone(),
                (None, Some(s)) => s.to_string(),
                (None, None) => String::new(),
            };
            let loc = info.location().map(|l| (l.file().to_string(), l.line())).unwrap_or_default();
            SEEN.with(|s| {
                s.borrow_mut().get_or_insert((loc.0, loc.1, msg));
            });
        }));
    });
    SEEN.with(|s| *s.borrow_mut() = None);
    CAPTURING.with(|c| c.set(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    CAPTURING.with(|c| c.set(false));
    assert!(result.is_err(), "expected a panic");
    SEEN.with(|s| s.borrow_mut().take()).expect("the hook saw the panic")
}

/// Asserts the panic was at `line` of this file and its message contains
/// `text`.
fn assert_site(seen: Seen, line: u32, text: &str) {
    let (file, at, msg) = seen;
    assert!(file.ends_with("misuse_panics.rs"), "panic located in {file}:{at}, not the caller's file: {msg}");
    assert_eq!(at, line, "panic at the wrong line: {msg}");
    assert!(msg.contains(text), "message {msg:?} lacks {text:?}");
}

/// `$call` panics outside `run`, at this line, naming `$op`.
macro_rules! outside_run {
    ($op:literal, $call:expr) => {{
        let seen = panic_site(|| {
            let _ = $call;
        });
        assert_site(seen, line!(), concat!($op, " must be called from inside trioxide::run"));
    }};
}

#[test]
fn current_time_outside_run_names_it_at_the_callers_line() {
    outside_run!("trioxide::current_time", trioxide::current_time());
}

#[test]
fn current_handle_on_another_thread_names_it_at_the_callers_line() {
    std::thread::spawn(|| {
        outside_run!("trioxide::from_thread::current_handle", trioxide::from_thread::current_handle());
    })
    .join()
    .unwrap();
}

#[test]
fn run_state_accessors_outside_run() {
    outside_run!("trioxide::checkpoint_if_cancelled", trioxide::checkpoint_if_cancelled());
    outside_run!("trioxide::current_task", trioxide::current_task());
    outside_run!("trioxide::task_tree", trioxide::task_tree());
    outside_run!("trioxide::io_stats", trioxide::io_stats());
    outside_run!("trioxide::current_effective_deadline", trioxide::current_effective_deadline());
    outside_run!("trioxide::notify_closing", trioxide::notify_closing(0));
    outside_run!("trioxide::signal::open_signal_receiver", trioxide::signal::open_signal_receiver(&[libc::SIGUSR1]));
}

#[test]
fn moving_the_deadline_of_a_scope_left_entered_after_its_run_names_it() {
    // A scope future polled once and then forgotten stays entered after its
    // run; moving or reading its deadline needs the clock, which has gone.
    let scope = trioxide::CancelScope::with_relative_deadline(Duration::from_secs(3600));
    trioxide::run(async {
        let mut fut = Box::pin(scope.run(trioxide::sleep_forever()));
        std::future::poll_fn(|cx| {
            assert!(fut.as_mut().poll(cx).is_pending());
            std::task::Poll::Ready(())
        })
        .await;
        std::mem::forget(fut);
    });
    outside_run!("trioxide::CancelScope::set_deadline", scope.set_deadline(trioxide::Instant::ZERO));
    outside_run!("trioxide::CancelScope::set_relative_deadline", scope.set_relative_deadline(Duration::ZERO));
    outside_run!("trioxide::CancelScope::relative_deadline", scope.relative_deadline());
}

#[test]
fn instruments_outside_run() {
    #[derive(Debug)]
    struct Quiet;
    impl Instrument for Quiet {}
    let i: Rc<dyn Instrument> = Rc::new(Quiet);
    outside_run!("trioxide::add_instrument", trioxide::add_instrument(i.clone()));
    outside_run!("trioxide::remove_instrument", trioxide::remove_instrument(&i));
}

#[test]
fn sync_primitives_outside_run() {
    let lock = Lock::new();
    outside_run!("Lock::try_acquire", lock.try_acquire());
    outside_run!("Lock::release", lock.release());
    let cond = Condition::new();
    outside_run!("Condition::try_acquire", cond.try_acquire());
    outside_run!("Condition::notify", cond.notify(1));
    outside_run!("Condition::notify_all", cond.notify_all());
    let limiter = CapacityLimiter::new(1);
    outside_run!("CapacityLimiter::try_acquire", limiter.try_acquire());
    outside_run!("CapacityLimiter::release", limiter.release());
    outside_run!("Borrower::current_task", Borrower::current_task());
    let lot = ParkingLot::new();
    let id = trioxide::run(async { trioxide::current_task().id }); // a task of an earlier run
    outside_run!("ParkingLot::add_breaker", lot.add_breaker(id));
    outside_run!("ParkingLot::remove_breaker", lot.remove_breaker(id));
}

#[test]
fn current_task_in_an_instrument_hook_names_it_at_the_callers_line() {
    /// Calls `current_task()` between task steps, where there is no task.
    #[derive(Debug)]
    struct AskBetweenSteps(Cell<u32>);
    impl Instrument for AskBetweenSteps {
        fn after_task_step(&self, _task: TaskId) {
            self.0.set(line!() + 1);
            let _ = trioxide::current_task();
        }
    }
    let hook = Rc::new(AskBetweenSteps(Cell::new(0)));
    let seen = panic_site(|| {
        trioxide::Builder::new().instrument(hook.clone()).run(async {});
    });
    assert_site(seen, hook.0.get(), "trioxide::current_task must be called from inside a trioxide task");
}

#[test]
fn receive_until_an_empty_delimiter_panics_at_the_callers_line() {
    let line = Cell::new(0);
    let seen = panic_site(|| {
        trioxide::run(async {
            let (_tx, rx) = memory_stream_one_way_pair();
            let rx = BufferedReceiveStream::new(rx);
            line.set(line!() + 1);
            drop(rx.receive_until(b"", 10)); // panics when called, before any poll
        });
    });
    assert_site(seen, line.get(), "BufferedReceiveStream::receive_until needs a non-empty delimiter");
}

#[test]
fn run_inside_run_names_it() {
    let line = Cell::new(0);
    let seen = panic_site(|| {
        trioxide::run(async {
            line.set(line!() + 1);
            trioxide::run(trioxide::sleep(Duration::ZERO))
        })
        .unwrap();
    });
    assert_site(seen, line.get(), "trioxide::run called inside a running trioxide runtime");
}

#[test]
fn mock_clock_negative_rate_names_it_at_the_callers_line() {
    let clock = trioxide::MockClock::new();
    let line = Cell::new(0);
    let seen = panic_site(|| {
        line.set(line!() + 1);
        clock.set_rate(-1.0);
    });
    assert_site(seen, line.get(), "trioxide::MockClock::set_rate needs a rate >= 0, got -1");
    let seen = panic_site(|| clock.set_rate(f64::NAN));
    assert_site(seen, line!() - 1, "trioxide::MockClock::set_rate needs a rate >= 0, got NaN");
}

#[test]
fn channel_send_polled_after_completion_names_the_future() {
    use std::future::{poll_fn, Future};
    use std::pin::Pin;
    use std::task::Poll;
    let seen = panic_site(|| {
        trioxide::run(async {
            let (tx, _rx) = trioxide::open_memory_channel::<u8>(1);
            let mut send = tx.send(1);
            poll_fn(|cx| {
                assert!(Pin::new(&mut send).poll(cx).is_ready());
                let _ = Pin::new(&mut send).poll(cx); // panics
                Poll::Ready(())
            })
            .await;
        });
    });
    assert!(seen.2.contains("trioxide::channel::SendFuture polled after completion"), "{}", seen.2);
}

#[test]
fn current_statistics_outside_run() {
    outside_run!("trioxide::current_statistics", trioxide::current_statistics());
}
