//! Happy Eyeballs (RFC 8305, as Trio runs it): `happy_eyeballs` with a fake
//! connect on virtual time (exact start, failure and cancellation instants),
//! then `open_tcp_stream` and `happy_eyeballs` with real sockets on
//! 127.0.0.1.

mod io_support;

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use io_support::*;
use trioxide::{
    current_time, happy_eyeballs, io_error_kind, open_nursery, open_tcp_stream, sleep, sleep_forever, BoxError,
    CancelScope, Cancelled, Instant, IoErrorKind, MockClock, TcpListener, TcpStream, HAPPY_EYEBALLS_DELAY,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn now_ms() -> u64 {
    current_time().saturating_duration_since(Instant::ZERO).as_millis() as u64
}

/// What a fake connection attempt does.
#[derive(Clone, Copy, Debug)]
enum Plan {
    /// Never finishes (until cancelled).
    Hang,
    /// Fails after that many ms with that error.
    Fail(u64, io::ErrorKind, &'static str),
    /// Succeeds after that many ms.
    Succeed(u64),
}

type Log = Rc<RefCell<Vec<String>>>;

/// A fake connection: records its drop.
struct Conn {
    id: usize,
    drops: Log,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.drops.borrow_mut().push(format!("#{} dropped", self.id));
    }
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Conn#{}", self.id)
    }
}

/// A fake connect for `happy_eyeballs`: target `(id, plan)`; logs
/// "#id start@T", "#id failed@T", "#id connected@T", "#id cancelled@T"
/// (T in virtual ms).
fn fake_connect(log: &Log) -> impl Fn((usize, Plan)) -> std::pin::Pin<Box<dyn Future<Output = io::Result<Conn>>>> {
    let log = log.clone();
    move |(id, plan)| {
        let log = log.clone();
        Box::pin(async move {
            let push = |what: &str| log.borrow_mut().push(format!("#{id} {what}@{}", now_ms()));
            push("start");
            let waited = match plan {
                Plan::Hang => sleep_forever().await.map(|never| match never {}),
                Plan::Fail(t, ..) | Plan::Succeed(t) => sleep(ms(t)).await,
            };
            if let Err(Cancelled) = waited {
                push("cancelled");
                return Err(Cancelled.into());
            }
            match plan {
                Plan::Fail(_, kind, msg) => {
                    push("failed");
                    Err(io::Error::new(kind, msg))
                }
                _ => {
                    push("connected");
                    Ok(Conn { id, drops: log.clone() })
                }
            }
        })
    }
}

fn targets(plans: &[Plan]) -> Vec<(usize, Plan)> {
    plans.iter().copied().enumerate().collect()
}

/// A mock clock for the fake attempts: nothing real is in flight, so it
/// may jump as soon as every task is blocked.
fn run_virtual<T>(main: impl Future<Output = Result<T, BoxError>>) -> T {
    let clock = MockClock::new();
    clock.set_autojump_threshold(Some(Duration::ZERO));
    run_on(1, clock, main)
}

fn entries(log: &Log) -> Vec<String> {
    log.borrow().clone()
}

// ---------------------------------------------------------------- fake attempts

#[test]
fn attempts_start_every_250ms_while_earlier_ones_hang_and_an_outer_cancel_reports_cancelled() {
    let log: Log = Rc::default();
    run_virtual(async {
        let scope = CancelScope::with_deadline(Instant::ZERO + ms(1000));
        let out = scope
            .run(async {
                let r = happy_eyeballs(targets(&[Plan::Hang; 5]), HAPPY_EYEBALLS_DELAY, fake_connect(&log)).await;
                Ok::<_, BoxError>(r)
            })
            .await?
            .expect("the body returns the result");
        assert_eq!(kind_of(&out), Some(IoErrorKind::Cancelled), "{out:?}");
        assert_eq!(now_ms(), 1000);
        Ok(())
    });
    assert_eq!(HAPPY_EYEBALLS_DELAY, ms(250));
    let log = entries(&log);
    // The fifth attempt would start at 1000, but the outer scope's deadline
    // cancels everything then.
    assert_eq!(log[..4], ["#0 start@0", "#1 start@250", "#2 start@500", "#3 start@750"]);
    assert_eq!(
        sorted_tail(&log, 4),
        ["#0 cancelled@1000", "#1 cancelled@1000", "#2 cancelled@1000", "#3 cancelled@1000"]
    );
}

/// The entries of `log` from `from` on, sorted (tasks cancelled in one pass
/// log in the pass's order, which is the scheduler's business).
fn sorted_tail(log: &[String], from: usize) -> Vec<String> {
    let mut tail = log[from.min(log.len())..].to_vec();
    tail.sort();
    tail
}

#[test]
fn the_first_success_is_returned_and_cancels_the_other_attempts() {
    let log: Log = Rc::default();
    let conn = run_virtual(async {
        let plans = [Plan::Hang, Plan::Hang, Plan::Succeed(100), Plan::Hang];
        let conn = happy_eyeballs(targets(&plans), HAPPY_EYEBALLS_DELAY, fake_connect(&log)).await?;
        assert_eq!(now_ms(), 600, "returned as soon as the winner connected");
        Ok(conn)
    });
    assert_eq!(conn.id, 2);
    let log = entries(&log);
    assert_eq!(log[..4], ["#0 start@0", "#1 start@250", "#2 start@500", "#2 connected@600"]);
    // The losers saw their cancellation; the fourth target never started.
    assert_eq!(sorted_tail(&log, 4), ["#0 cancelled@600", "#1 cancelled@600"]);
}

#[test]
fn a_failed_attempt_starts_the_next_one_at_once() {
    let log: Log = Rc::default();
    let conn = run_virtual(async {
        let plans = [
            Plan::Fail(100, io::ErrorKind::ConnectionRefused, "refused"),
            Plan::Fail(50, io::ErrorKind::ConnectionRefused, "refused"),
            Plan::Succeed(300),
        ];
        Ok(happy_eyeballs(targets(&plans), HAPPY_EYEBALLS_DELAY, fake_connect(&log)).await?)
    });
    assert_eq!(conn.id, 2);
    assert_eq!(
        entries(&log),
        ["#0 start@0", "#0 failed@100", "#1 start@100", "#1 failed@150", "#2 start@150", "#2 connected@450"]
    );
}

#[test]
fn attempts_failing_at_once_all_start_at_time_zero() {
    let log: Log = Rc::default();
    let conn = run_virtual(async {
        let plans = [
            Plan::Fail(0, io::ErrorKind::ConnectionRefused, "a"),
            Plan::Fail(0, io::ErrorKind::ConnectionRefused, "b"),
            Plan::Succeed(0),
        ];
        Ok(happy_eyeballs(targets(&plans), HAPPY_EYEBALLS_DELAY, fake_connect(&log)).await?)
    });
    assert_eq!(conn.id, 2);
    assert_eq!(
        entries(&log),
        ["#0 start@0", "#0 failed@0", "#1 start@0", "#1 failed@0", "#2 start@0", "#2 connected@0"]
    );
}

#[test]
fn a_failure_after_the_next_attempt_started_does_not_hurry_the_one_after() {
    // Only the newest attempt's failure starts the next one early (Trio's
    // `attempt_failed` event is per attempt).
    let log: Log = Rc::default();
    let conn = run_virtual(async {
        let plans = [Plan::Fail(300, io::ErrorKind::ConnectionRefused, "late"), Plan::Hang, Plan::Succeed(10)];
        Ok(happy_eyeballs(targets(&plans), HAPPY_EYEBALLS_DELAY, fake_connect(&log)).await?)
    });
    assert_eq!(conn.id, 2);
    assert_eq!(
        entries(&log),
        ["#0 start@0", "#1 start@250", "#0 failed@300", "#2 start@500", "#2 connected@510", "#1 cancelled@510"]
    );
}

#[test]
fn when_every_attempt_fails_the_error_lists_each_failure_in_the_order_they_failed() {
    let log: Log = Rc::default();
    let err = run_virtual(async {
        let plans = [
            Plan::Fail(400, io::ErrorKind::TimedOut, "slow failure"),
            Plan::Fail(10, io::ErrorKind::ConnectionRefused, "fast failure"),
            Plan::Fail(0, io::ErrorKind::HostUnreachable, "immediate failure"),
        ];
        let r = happy_eyeballs(targets(&plans), HAPPY_EYEBALLS_DELAY, fake_connect(&log)).await;
        Ok(r.expect_err("every attempt failed"))
    });
    assert_eq!(
        entries(&log),
        ["#0 start@0", "#1 start@250", "#1 failed@260", "#2 start@260", "#2 failed@260", "#0 failed@400"]
    );
    assert_eq!(err.to_string(), "all 3 connection attempts failed: fast failure; immediate failure; slow failure",);
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "the kind of the first failure");
    assert_eq!(io_error_kind(&err), None);
}

/// An error payload to check that a single failure comes back untouched.
#[derive(Debug)]
struct Marker(u32);

impl fmt::Display for Marker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "marker {}", self.0)
    }
}

impl std::error::Error for Marker {}

#[test]
fn a_single_failure_is_returned_as_itself() {
    let err = run_virtual(async {
        let connect = |_: ()| async {
            sleep(ms(30)).await?;
            Err::<(), _>(io::Error::new(io::ErrorKind::ConnectionRefused, Marker(7)))
        };
        let r = happy_eyeballs(vec![()], HAPPY_EYEBALLS_DELAY, connect).await;
        assert_eq!(now_ms(), 30);
        Ok(r.expect_err("it failed"))
    });
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    let inner = err.get_ref().and_then(|e| e.downcast_ref::<Marker>()).expect("the original payload");
    assert_eq!(inner.0, 7);
}

#[test]
fn no_targets_is_an_invalid_input_error() {
    let err = run_virtual(async {
        let r = happy_eyeballs(Vec::<(usize, Plan)>::new(), HAPPY_EYEBALLS_DELAY, fake_connect(&Rc::default())).await;
        Ok(r.expect_err("nothing to connect to"))
    });
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn two_attempts_succeeding_in_the_same_pass_return_one_and_drop_the_other() {
    let log: Log = Rc::default();
    let winner = run_virtual(async {
        // #0 connects at 300; #1 starts at 250 and connects at 300 too.
        let plans = [Plan::Succeed(300), Plan::Succeed(50)];
        let conn = happy_eyeballs(targets(&plans), HAPPY_EYEBALLS_DELAY, fake_connect(&log)).await?;
        assert_eq!(now_ms(), 300);
        Ok(conn)
    });
    let loser = 1 - winner.id;
    let mut log = entries(&log);
    assert_eq!(log[..2], ["#0 start@0", "#1 start@250"]);
    let tail = log.split_off(2);
    let mut connected = tail[..2].to_vec();
    connected.sort();
    assert_eq!(connected, ["#0 connected@300", "#1 connected@300"]);
    // The loser was closed (dropped) inside happy_eyeballs; the winner lives.
    assert_eq!(tail[2..], [format!("#{loser} dropped")]);
    drop(winner);
}

// ---------------------------------------------------------------- real sockets

/// Accepts one connection on `listener` and answers "hi" to it.
async fn accept_and_greet(listener: Rc<TcpListener>) -> Result<(), BoxError> {
    let (stream, _) = listener.accept().await?;
    stream.send_all(b"hi").await?;
    Ok(())
}

#[test]
fn open_tcp_stream_to_an_ip_literal_connects_to_a_live_listener() {
    run_io(1, async {
        let listener = Rc::new(TcpListener::bind("127.0.0.1:0".parse()?)?);
        let addr = listener.local_addr()?;
        let l = listener.clone();
        open_nursery(|n| async move {
            n.start_soon(accept_and_greet(l))?;
            let stream = open_tcp_stream("127.0.0.1", addr.port()).await?;
            assert_eq!(stream.peer_addr()?, addr);
            assert_eq!(recv_exact(&stream, 2).await?, b"hi");
            Ok::<_, BoxError>(())
        })
        .await?;
        assert_eq!(now_ms(), 0);
        Ok(())
    });
}

#[test]
fn happy_eyeballs_over_a_refused_address_and_a_live_listener_connects_via_the_second_at_once() {
    // A larger autojump threshold: the refusal must come back as an event
    // before the clock may jump to the 250 ms delay.
    let clock = MockClock::new();
    clock.set_autojump_threshold(Some(ms(500)));
    run_on(1, clock, async {
        let listener = Rc::new(TcpListener::bind("127.0.0.1:0".parse()?)?);
        let addr = listener.local_addr()?;
        let refused = refused_addr();
        let l = listener.clone();
        open_nursery(|n| async move {
            n.start_soon(accept_and_greet(l))?;
            let stream = happy_eyeballs(vec![refused, addr], HAPPY_EYEBALLS_DELAY, TcpStream::connect).await?;
            assert_eq!(stream.peer_addr()?, addr, "connected through the second address");
            assert_eq!(now_ms(), 0, "the refusal started the second attempt at once, not after 250 ms");
            assert_eq!(recv_exact(&stream, 2).await?, b"hi");
            Ok::<_, BoxError>(())
        })
        .await?;
        Ok(())
    });
}

#[test]
fn open_tcp_stream_resolves_localhost_and_connects() {
    // Resolution runs on a helper thread; a generous threshold keeps the
    // clock still while it does (nothing here waits on virtual time).
    let clock = MockClock::new();
    clock.set_autojump_threshold(Some(ms(1000)));
    // Not `run_on`: the resolver thread wakes the task with a waker it
    // drops only when its `wake()` returns, which may be after the run has
    // ended, so the report's count of task allocations is not checked.
    run_on_with_report(1, clock, async {
        let listener = Rc::new(TcpListener::bind("127.0.0.1:0".parse()?)?);
        let addr = listener.local_addr()?;
        let l = listener.clone();
        open_nursery(|n| async move {
            n.start_soon(accept_and_greet(l))?;
            // If "localhost" resolves to ::1 first, that attempt is refused
            // and the 127.0.0.1 one wins.
            let stream = open_tcp_stream("localhost", addr.port()).await?;
            assert_eq!(stream.peer_addr()?.port(), addr.port());
            assert_eq!(recv_exact(&stream, 2).await?, b"hi");
            Ok::<_, BoxError>(())
        })
        .await?;
        Ok(())
    });
}
