//! `trioxide::signal`: signals raised in this process reach the receivers
//! that listen to them, coalesced, in order of first arrival; receiving is
//! a checkpoint that loses nothing when cancelled; dropping a receiver puts
//! the previous disposition back and hands it what was never reported.
//!
//! Signal dispositions are process-wide and the test harness runs tests on
//! several threads, so every test takes `SERIAL` first. Taking it also sets
//! the base dispositions every test starts from: SIGUSR1 and SIGUSR2
//! ignored (their default would kill the test binary), SIGWINCH default
//! (which ignores it). So no raise can ever meet a fatal default
//! disposition. Only SIGUSR1, SIGUSR2 and SIGWINCH are used.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, MutexGuard};
use std::time::Duration;

use futures_core::Stream;
use libc::{c_int, SIGUSR1, SIGUSR2, SIGWINCH};
use trioxide::signal::{open_signal_receiver, SignalReceiver};
use trioxide::{
    current_time, fail_after, move_on_after, open_nursery, wait_all_tasks_blocked, BoxError, Builder, CancelScope,
    Cancelled, MockClock, TooSlow,
};

static SERIAL: Mutex<()> = Mutex::new(());

/// Takes the lock every test holds, and sets the base dispositions.
fn serial() -> MutexGuard<'static, ()> {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    set_disposition(SIGUSR1, libc::SIG_IGN);
    set_disposition(SIGUSR2, libc::SIG_IGN);
    set_disposition(SIGWINCH, libc::SIG_DFL);
    guard
}

fn set_disposition(sig: c_int, handler: libc::sighandler_t) {
    // SAFETY: a zeroed sigaction with a handler value of SIG_IGN, SIG_DFL or
    // one of this file's `extern "C"` handlers is valid; the pointer is to
    // a live local.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = handler;
        libc::sigemptyset(&mut act.sa_mask);
        assert_eq!(libc::sigaction(sig, &act, std::ptr::null_mut()), 0);
    }
}

fn disposition(sig: c_int) -> libc::sighandler_t {
    // SAFETY: a null `act` only queries; `old` is a live local.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(sig, std::ptr::null(), &mut old), 0);
        old.sa_sigaction
    }
}

fn raise(sig: c_int) {
    // SAFETY: raise only sends `sig` to this thread; every disposition these
    // tests set up handles it without harm.
    assert_eq!(unsafe { libc::raise(sig) }, 0);
}

/// Deliveries to `count_handler`.
static COUNTED: AtomicUsize = AtomicUsize::new(0);

extern "C" fn count_handler(_: c_int) {
    COUNTED.fetch_add(1, Ordering::SeqCst);
}

fn counted() -> usize {
    COUNTED.load(Ordering::SeqCst)
}

/// Makes `count_handler` the disposition of `sig`, with `COUNTED` at 0, and
/// returns the disposition as the kernel now records it.
///
/// Whether `count_handler` is installed later on is checked against that
/// record, or by raising the signal and watching `COUNTED`; never against a
/// fresh `count_handler as sighandler_t`. A function's address is not unique
/// in Rust: in release builds a small function gets a private copy in every
/// codegen unit that uses it (this binary has two `count_handler`s), so two
/// casts of the same function can give two different numbers.
fn install_count_handler(sig: c_int) -> libc::sighandler_t {
    set_disposition(sig, count_handler as extern "C" fn(c_int) as libc::sighandler_t);
    COUNTED.store(0, Ordering::SeqCst);
    disposition(sig)
}

/// Virtual-time bound on every run: a lost wake-up makes the clock jump to
/// it and the run fail with `TooSlow` instead of hanging.
const HANG_GUARD: Duration = Duration::from_secs(3600);

/// Runs `main` on a mock clock that jumps as soon as every task is blocked.
/// For signals raised on the run's own thread: `raise` runs the handler
/// before it returns, so the byte is in the pipe before anyone waits.
fn run_now<T>(main: impl std::future::Future<Output = Result<T, BoxError>>) -> T {
    run_with_threshold(Duration::ZERO, main)
}

/// Like [`run_now`], but the clock jumps only after 1 s of real quiet: for
/// signals sent to the whole process, whose handler may run a moment later
/// on another thread.
fn run_cross_thread<T>(main: impl std::future::Future<Output = Result<T, BoxError>>) -> T {
    run_with_threshold(Duration::from_secs(1), main)
}

fn run_with_threshold<T>(threshold: Duration, main: impl std::future::Future<Output = Result<T, BoxError>>) -> T {
    let clock = MockClock::new();
    clock.set_autojump_threshold(Some(threshold));
    let (out, report) = Builder::new().seed(3).clock(clock).run_with_report(fail_after(HANG_GUARD, main));
    assert_eq!(report.tasks_left, 0, "tasks left behind");
    match out {
        Ok(v) => v,
        Err(e) if e.is::<TooSlow>() => panic!("the run hung: virtual time reached the {HANG_GUARD:?} guard"),
        Err(e) => panic!("the run failed: {e}"),
    }
}

#[test]
fn raised_sigusr1_reaches_the_receiver() {
    let _serial = serial();
    let got = run_now(async {
        let rx = open_signal_receiver(&[SIGUSR1])?;
        raise(SIGUSR1);
        Ok(rx.receive().await?)
    });
    assert_eq!(got, SIGUSR1);
}

#[test]
fn kill_to_own_pid_reaches_the_receiver() {
    let _serial = serial();
    let got = run_cross_thread(async {
        let rx = open_signal_receiver(&[SIGUSR2])?;
        // Process-directed: the kernel may run the handler on any thread.
        // SAFETY: kill with our own pid and a handled signal.
        assert_eq!(unsafe { libc::kill(libc::getpid(), SIGUSR2) }, 0);
        Ok(rx.receive().await?)
    });
    assert_eq!(got, SIGUSR2);
}

#[test]
fn signals_delivered_several_times_before_reading_are_reported_once_in_order_of_first_arrival() {
    let _serial = serial();
    run_now(async {
        let rx = open_signal_receiver(&[SIGUSR1, SIGUSR2, SIGWINCH])?;
        for sig in [SIGUSR2, SIGUSR1, SIGUSR2, SIGUSR1, SIGUSR2] {
            raise(sig);
        }
        assert_eq!(rx.receive().await?, SIGUSR2);
        assert_eq!(rx.receive().await?, SIGUSR1);
        // Nothing else is pending: the next receive waits until cancelled.
        let t = current_time();
        assert_eq!(move_on_after(Duration::from_secs(1), rx.receive()).await?, None);
        assert_eq!(current_time().saturating_duration_since(t), Duration::from_secs(1));
        // A delivery after the signal was reported is reported again.
        raise(SIGUSR1);
        raise(SIGWINCH);
        assert_eq!(rx.receive().await?, SIGUSR1);
        assert_eq!(rx.receive().await?, SIGWINCH);
        Ok(())
    });
}

#[test]
fn two_receivers_in_one_run_both_get_the_signal() {
    let _serial = serial();
    run_now(async {
        let a = open_signal_receiver(&[SIGUSR1])?;
        let b = open_signal_receiver(&[SIGUSR1, SIGUSR2])?;
        raise(SIGUSR1);
        assert_eq!(a.receive().await?, SIGUSR1);
        assert_eq!(b.receive().await?, SIGUSR1);
        Ok(())
    });
}

#[test]
fn receivers_in_runs_on_two_threads_both_get_one_process_directed_signal() {
    let _serial = serial();
    let barrier = Arc::new(Barrier::new(3));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                run_cross_thread(async move {
                    let rx = open_signal_receiver(&[SIGUSR1])?;
                    barrier.wait(); // both receivers are open
                    Ok(rx.receive().await?)
                })
            })
        })
        .collect();
    barrier.wait();
    // SAFETY: kill with our own pid and a handled (or ignored) signal.
    assert_eq!(unsafe { libc::kill(libc::getpid(), SIGUSR1) }, 0);
    for t in threads {
        assert_eq!(t.join().expect("receiver thread panicked"), SIGUSR1);
    }
    assert_eq!(disposition(SIGUSR1), libc::SIG_IGN, "the last receiver restored the base disposition");
}

#[test]
fn receive_cancelled_while_waiting_returns_cancelled_at_the_deadline_and_loses_nothing() {
    let _serial = serial();
    run_now(async {
        let rx = open_signal_receiver(&[SIGUSR1])?;
        let t = current_time();
        let out = move_on_after(Duration::from_secs(5), rx.receive()).await?;
        assert_eq!(out, None);
        assert_eq!(current_time().saturating_duration_since(t), Duration::from_secs(5));
        // Cancelled at entry while a signal is pending: the checkpoint
        // reports Cancelled and the signal stays for the next receive.
        raise(SIGUSR1);
        let scope = CancelScope::new();
        scope.cancel();
        assert_eq!(scope.run(async { rx.receive().await }).await, Ok(None));
        assert!(scope.cancelled_caught());
        assert_eq!(rx.receive().await?, SIGUSR1);
        Ok(())
    });
}

#[test]
fn a_blocked_receive_is_woken_by_a_signal_from_another_task() {
    let _serial = serial();
    run_now(async {
        open_nursery(|n| async move {
            let rx = std::rc::Rc::new(open_signal_receiver(&[SIGWINCH])?);
            let got = std::rc::Rc::new(std::cell::Cell::new(0));
            let (rx2, got2) = (rx.clone(), got.clone());
            n.start_soon(async move {
                got2.set(rx2.receive().await?);
                Ok::<_, Cancelled>(())
            })?;
            wait_all_tasks_blocked().await?;
            assert_eq!(got.get(), 0);
            raise(SIGWINCH);
            wait_all_tasks_blocked().await?;
            assert_eq!(got.get(), SIGWINCH);
            Ok::<_, BoxError>(())
        })
        .await?;
        Ok(())
    });
}

/// The stream's next item.
async fn next(rx: &mut SignalReceiver) -> Option<Result<c_int, Cancelled>> {
    poll_fn(|cx| Pin::new(&mut *rx).poll_next(cx)).await
}

#[test]
fn the_receiver_is_a_stream_of_signals() {
    let _serial = serial();
    run_now(async {
        let mut rx = open_signal_receiver(&[SIGUSR1, SIGUSR2])?;
        raise(SIGUSR2);
        raise(SIGUSR1);
        assert_eq!(next(&mut rx).await, Some(Ok(SIGUSR2)));
        assert_eq!(next(&mut rx).await, Some(Ok(SIGUSR1)));
        let t = current_time();
        // Waiting in the stream is cancellable like receive.
        assert_eq!(
            move_on_after(Duration::from_secs(2), async { next(&mut rx).await.expect("never ends") }).await?,
            None
        );
        assert_eq!(current_time().saturating_duration_since(t), Duration::from_secs(2));
        raise(SIGUSR1);
        assert_eq!(next(&mut rx).await, Some(Ok(SIGUSR1)));
        Ok(())
    });
}

#[test]
fn while_open_the_receiver_replaces_the_previous_handler() {
    let _serial = serial();
    let previous = install_count_handler(SIGUSR2);
    run_now(async {
        let rx = open_signal_receiver(&[SIGUSR2])?;
        assert_ne!(disposition(SIGUSR2), previous, "the receiver's handler is installed");
        raise(SIGUSR2);
        assert_eq!(rx.receive().await?, SIGUSR2);
        assert_eq!(counted(), 0, "the previous handler was called too");
        Ok(())
    });
    // The previous handler is back, as the kernel records it and in effect.
    assert_eq!(disposition(SIGUSR2), previous);
    raise(SIGUSR2);
    assert_eq!(counted(), 1, "the restored handler did not run");
    set_disposition(SIGUSR2, libc::SIG_IGN);
}

#[test]
fn drop_restores_the_previous_disposition_and_an_ignored_signal_stays_ignored() {
    let _serial = serial();
    run_now(async {
        let rx = open_signal_receiver(&[SIGUSR1])?;
        assert_ne!(disposition(SIGUSR1), libc::SIG_IGN, "the receiver's handler is installed");
        raise(SIGUSR1);
        // Dropped unread: redelivered to SIG_IGN, which ignores it.
        drop(rx);
        assert_eq!(disposition(SIGUSR1), libc::SIG_IGN);
        // Raising it now does nothing either (we are still alive).
        raise(SIGUSR1);
        Ok(())
    });
    assert_eq!(disposition(SIGUSR1), libc::SIG_IGN);
}

#[test]
fn unread_signals_are_redelivered_once_to_the_previous_handler_on_drop() {
    let _serial = serial();
    let previous = install_count_handler(SIGUSR2);
    run_now(async {
        let rx = open_signal_receiver(&[SIGUSR2, SIGUSR1])?;
        raise(SIGUSR2);
        raise(SIGUSR2);
        raise(SIGUSR1);
        assert_eq!(counted(), 0);
        drop(rx);
        // Coalesced while pending, so redelivered once.
        assert_eq!(counted(), 1);
        // The previous handler is back, as the kernel records it and in
        // effect: a new delivery reaches it.
        assert_eq!(disposition(SIGUSR2), previous);
        raise(SIGUSR2);
        assert_eq!(counted(), 2);
        Ok(())
    });
    set_disposition(SIGUSR2, libc::SIG_IGN);
}

#[test]
fn dropping_one_of_two_receivers_neither_redelivers_nor_restores() {
    let _serial = serial();
    let previous = install_count_handler(SIGUSR2);
    run_now(async {
        let a = open_signal_receiver(&[SIGUSR2])?;
        let b = open_signal_receiver(&[SIGUSR2])?;
        raise(SIGUSR2);
        drop(a);
        // `b` has its own copy: nothing goes to the previous handler.
        assert_eq!(counted(), 0);
        assert_eq!(b.receive().await?, SIGUSR2);
        // `b`'s handler stays installed: a new delivery goes to `b`, not to
        // the previous handler.
        assert_ne!(disposition(SIGUSR2), previous);
        raise(SIGUSR2);
        assert_eq!(counted(), 0, "the previous handler was put back while b listens");
        assert_eq!(b.receive().await?, SIGUSR2);
        drop(b);
        assert_eq!(counted(), 0, "b reported its signals; nothing to redeliver");
        // The last receiver gone, the previous handler is back, as the
        // kernel records it and in effect.
        assert_eq!(disposition(SIGUSR2), previous);
        raise(SIGUSR2);
        assert_eq!(counted(), 1, "the restored handler did not run");
        Ok(())
    });
    set_disposition(SIGUSR2, libc::SIG_IGN);
}

#[test]
fn bad_signal_lists_are_rejected_with_invalid_input_and_change_nothing() {
    let _serial = serial();
    run_now(async {
        for bad in [
            &[][..],
            &[0],
            &[-1],
            &[65],
            &[libc::SIGKILL],
            &[libc::SIGSTOP],
            &[libc::SIGSEGV],
            &[SIGUSR1, libc::SIGSTOP],
        ] {
            let err = open_signal_receiver(bad).expect_err("accepted a bad signal list");
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{bad:?}: {err}");
        }
        assert_eq!(disposition(SIGUSR1), libc::SIG_IGN);
        // Signal 32 is kept by glibc: sigaction refuses it (EINVAL) after
        // SIGUSR1's handler was installed, which is then undone.
        let err = open_signal_receiver(&[SIGUSR1, 32]).expect_err("glibc accepted signal 32");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
        assert_eq!(disposition(SIGUSR1), libc::SIG_IGN, "the partial installation was not undone");
        // And the registry is still usable.
        let rx = open_signal_receiver(&[SIGUSR1])?;
        raise(SIGUSR1);
        assert_eq!(rx.receive().await?, SIGUSR1);
        Ok(())
    });
}

#[test]
#[should_panic(expected = "two tasks called SignalReceiver::receive at once")]
fn two_tasks_receiving_from_one_receiver_is_a_programming_error() {
    let _serial = serial();
    run_now(async {
        open_nursery(|n| async move {
            let rx = std::rc::Rc::new(open_signal_receiver(&[SIGWINCH])?);
            let rx2 = rx.clone();
            n.start_soon(async move { rx2.receive().await.map(drop) })?;
            wait_all_tasks_blocked().await?;
            rx.receive().await?;
            Ok::<_, BoxError>(())
        })
        .await?;
        Ok(())
    });
}

/// A signal landing on the runtime thread interrupts its I/O wait
/// (`EINTR`). That is not the real-time quiet a mock clock's autojump
/// threshold asks for: the clock must still wait the whole threshold
/// before it jumps. (Before the fix, the interrupted wait counted as quiet
/// and the clock jumped at once, which made
/// `kill_to_own_pid_reaches_the_receiver` fail under load.)
#[test]
fn a_signal_interrupting_the_idle_wait_does_not_trigger_the_autojump() {
    let _serial = serial();
    const THRESHOLD: Duration = Duration::from_millis(200);
    let real = run_with_threshold(THRESHOLD, async {
        let _rx = open_signal_receiver(&[SIGUSR2])?;
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            // SAFETY: `me` is the runtime thread, alive until this thread is
            // joined below; SIGUSR2 is handled (the receiver above).
            unsafe { libc::pthread_kill(me, SIGUSR2) }
        });
        let start = std::time::Instant::now();
        trioxide::sleep(Duration::from_secs(10)).await?;
        let real = start.elapsed();
        assert_eq!(killer.join().expect("killer thread"), 0);
        Ok(real)
    });
    // A lower bound only: a busy machine can make it longer, never shorter.
    assert!(real >= THRESHOLD, "the clock jumped after {real:?} of real time, before the {THRESHOLD:?} threshold");
}
