//! Wakers: waking from other threads (the runtime blocked in its I/O wait,
//! or busy), wake-ups that must not be lost or duplicated, wakers that
//! outlive their run, and a task that wakes itself while being polled.
//!
//! Every test whose failure mode is a hang runs the runtime on a thread of
//! its own and gives up after a bound, so a lost wake-up fails the test
//! instead of hanging it.

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::Duration;

use trioxide::{checkpoint, open_nursery, wait_all_tasks_blocked, BoxError, Builder, Instrument, RunReport};

/// Runs `f` on a thread of its own and returns its result, failing the test
/// if it takes longer than `limit` (a lost wake-up hangs the run forever).
fn bounded<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        let out = f();
        let _ = tx.send(out);
    });
    match rx.recv_timeout(limit) {
        Ok(v) => {
            handle.join().expect("the run's thread");
            v
        }
        Err(RecvTimeoutError::Disconnected) => match handle.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the thread sent nothing but did not panic"),
        },
        Err(RecvTimeoutError::Timeout) => panic!("the run did not finish within {limit:?}: a wake-up was lost"),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Counts the times the runtime is about to block in its I/O wait with no
/// timeout, and tells a channel each time.
struct BlockingWaits {
    count: Cell<u32>,
    tx: mpsc::Sender<()>,
}

impl Instrument for BlockingWaits {
    fn before_io_wait(&self, timeout: Option<Duration>) {
        if timeout.is_none() {
            self.count.set(self.count.get() + 1);
            let _ = self.tx.send(());
        }
    }
}

#[test]
fn cross_thread_wake_reaches_a_blocked_task() {
    let (polls, report, blocked_waits) = bounded(Duration::from_secs(20), || {
        let flag = Arc::new(AtomicBool::new(false));
        let slot: Arc<Mutex<Option<Waker>>> = Arc::new(Mutex::new(None));
        let (blocking_tx, blocking_rx) = mpsc::channel();
        let blocking_rx = Arc::new(Mutex::new(blocking_rx));
        let waits = Rc::new(BlockingWaits { count: Cell::new(0), tx: blocking_tx });
        let mut waker_thread = None;
        let (polls, report) = Builder::new().seed(1).instrument(waits.clone()).run_with_report(async {
            let mut polls = 0u32;
            poll_fn(|cx| {
                polls += 1;
                if flag.load(Ordering::Acquire) {
                    return Poll::Ready(());
                }
                *lock(&slot) = Some(cx.waker().clone());
                if waker_thread.is_none() {
                    let (flag, slot, blocking_rx) = (flag.clone(), slot.clone(), blocking_rx.clone());
                    waker_thread = Some(thread::spawn(move || {
                        // Wait until the runtime is about to block with
                        // no timeout (no timer is pending), then give it
                        // a few ms to get into epoll_wait.
                        lock(&blocking_rx).recv().expect("the runtime never blocked");
                        thread::sleep(Duration::from_millis(5));
                        flag.store(true, Ordering::Release);
                        let w = lock(&slot).take().expect("the task stored its waker");
                        w.wake();
                    }));
                }
                Poll::Pending
            })
            .await;
            polls
        });
        waker_thread.expect("spawned").join().expect("the waking thread");
        (polls, report, waits.count.get())
    });
    // The runtime did block with no timeout (nothing else could wake it).
    assert!(blocked_waits >= 1);
    // One poll to block, one after the wake-up: no spurious polls.
    assert_eq!(polls, 2);
    assert_eq!((report.tasks_left, report.timers_left), (0, 0));
}

/// `THREADS` threads each add one unit of work `per_thread` times and wake
/// the consumer after each; the consumer takes all the work there is at each
/// poll and finishes when it has seen every unit. A wake-up lost after the
/// last unit hangs it.
fn many_wakes(busy_sibling: bool, seed: u64) -> (usize, usize, RunReport) {
    const THREADS: usize = 4;
    // Under valgrind (benches/valgrind.sh sets TRIOXIDE_VALGRIND) threads run
    // one at a time and each wake costs a thread switch: fewer units keep the
    // run well inside the guard while still checking that none is lost.
    let per_thread: usize = if std::env::var_os("TRIOXIDE_VALGRIND").is_some() { 500 } else { 10_000 };
    let total: usize = THREADS * per_thread;
    let work = Arc::new(AtomicUsize::new(0));
    let slot: Arc<Mutex<Option<Waker>>> = Arc::new(Mutex::new(None));
    let polls = Rc::new(Cell::new(0usize));
    let sibling_steps = Rc::new(Cell::new(0usize));
    let threads: Rc<RefCell<Vec<thread::JoinHandle<()>>>> = Rc::default();
    let consumer = {
        let (work, slot, polls, threads) = (work.clone(), slot.clone(), polls.clone(), threads.clone());
        let mut consumed = 0usize;
        poll_fn(move |cx| {
            polls.set(polls.get() + 1);
            {
                // Register before looking at the work: a producer either
                // sees this waker or its unit is seen below.
                let mut s = lock(&slot);
                match &*s {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *s = Some(cx.waker().clone()),
                }
            }
            consumed += work.swap(0, Ordering::AcqRel);
            if threads.borrow().is_empty() {
                for _ in 0..THREADS {
                    let (work, slot) = (work.clone(), slot.clone());
                    threads.borrow_mut().push(thread::spawn(move || {
                        for _ in 0..per_thread {
                            work.fetch_add(1, Ordering::AcqRel);
                            let w = lock(&slot).clone();
                            if let Some(w) = w {
                                w.wake();
                            }
                        }
                    }));
                }
            }
            assert!(consumed <= total);
            if consumed == total {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    };
    let done = Rc::new(Cell::new(false));
    let (out, report) = Builder::new().seed(seed).run_with_report(open_nursery(|n| {
        let (done, sibling_steps) = (done.clone(), sibling_steps.clone());
        async move {
            let d = done.clone();
            n.start_soon(async move {
                consumer.await;
                d.set(true);
            })?;
            if busy_sibling {
                // Keeps the runtime from parking: remote wake-ups are then
                // picked up between passes, not by the I/O wait.
                n.start_soon(async move {
                    while !done.get() {
                        checkpoint().await?;
                        sibling_steps.set(sibling_steps.get() + 1);
                    }
                    Ok::<_, BoxError>(())
                })?;
            }
            Ok::<_, BoxError>(())
        }
    }));
    out.expect("the nursery succeeds");
    for t in threads.take() {
        t.join().expect("a waking thread");
    }
    // Stale wakers from the producers are dropped by now; the consumer's
    // registered waker is still in the slot.
    drop(lock(&slot).take());
    (polls.get(), sibling_steps.get(), report)
}

#[test]
fn many_cross_thread_wakes_are_not_lost() {
    for (busy, seed) in [(false, 1), (true, 2), (false, 3), (true, 4)] {
        let (polls, sibling_steps, report) = bounded(Duration::from_secs(60), move || many_wakes(busy, seed));
        // At least the first poll and one after a wake-up; never more polls
        // than wake-ups (4 threads' units) plus the first.
        let wakes = if std::env::var_os("TRIOXIDE_VALGRIND").is_some() { 4 * 500 } else { 4 * 10_000 };
        assert!((2..=wakes + 1).contains(&polls), "busy={busy}: {polls} polls");
        if busy {
            assert!(sibling_steps > 0);
        }
        assert_eq!((report.tasks_left, report.timers_left), (0, 0), "busy={busy}");
    }
}

/// Takes the current task's waker.
fn my_waker() -> impl Future<Output = Waker> {
    poll_fn(|cx| Poll::Ready(cx.waker().clone()))
}

#[test]
fn waker_outliving_the_run_is_harmless() {
    // The main task's waker, kept past the end of the run, keeps exactly
    // one task allocation alive (the main task's placeholder).
    let (main_waker, report) = Builder::new().seed(1).run_with_report(my_waker());
    assert_eq!((report.tasks_left, report.timers_left, report.task_allocations_left), (0, 0, 1));

    // A child's waker and the main task's, both kept: two allocations. The
    // child's future itself has completed and been dropped.
    let (wakers, report) = Builder::new().seed(2).run_with_report(open_nursery(|n| async move {
        let child_slot: Rc<RefCell<Option<Waker>>> = Rc::default();
        let s = child_slot.clone();
        n.start_soon(async move {
            *s.borrow_mut() = Some(my_waker().await);
        })?;
        let main = my_waker().await;
        wait_all_tasks_blocked().await?;
        let child = child_slot.take().expect("the child ran");
        Ok::<_, BoxError>((main, child))
    }));
    let (main2, child) = wakers.expect("the nursery succeeds").expect("the body finished");
    assert_eq!((report.tasks_left, report.timers_left, report.task_allocations_left), (0, 0, 2));

    // Waking them after their run, on this thread and inside a later run
    // (whose scheduler must not pick them up), then from other threads.
    main_waker.wake_by_ref();
    child.wake_by_ref();
    let (polls, report) = Builder::new().seed(3).run_with_report(async {
        let mut polls = 0;
        poll_fn(|cx| {
            polls += 1;
            if polls == 1 {
                main2.wake_by_ref();
                child.wake_by_ref();
                cx.waker().wake_by_ref();
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
        polls
    });
    assert_eq!(polls, 2);
    assert_eq!((report.tasks_left, report.timers_left, report.task_allocations_left), (0, 0, 0));
    let t = thread::spawn(move || {
        main_waker.wake_by_ref();
        let c2 = child.clone();
        child.wake();
        c2.wake();
        main_waker.wake();
        drop(main2);
    });
    t.join().expect("waking from another thread after the run is harmless");
}

/// A future that counts its polls, stores its waker and is pending until
/// released.
fn parked_task(
    polls: Rc<Cell<u32>>,
    slot: Rc<RefCell<Option<Waker>>>,
    release: Rc<Cell<bool>>,
) -> impl Future<Output = ()> {
    poll_fn(move |cx| {
        polls.set(polls.get() + 1);
        if release.get() {
            return Poll::Ready(());
        }
        *slot.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    })
}

#[test]
fn task_woken_twice_before_running_is_polled_once() {
    for seed in 0..8 {
        let (out, report) = bounded(Duration::from_secs(20), move || {
            let (out, report) = Builder::new().seed(seed).run_with_report(open_nursery(|n| async move {
                let polls = Rc::new(Cell::new(0u32));
                let slot: Rc<RefCell<Option<Waker>>> = Rc::default();
                let release = Rc::new(Cell::new(false));
                n.start_soon(parked_task(polls.clone(), slot.clone(), release.clone()))?;
                wait_all_tasks_blocked().await?;
                assert_eq!(polls.get(), 1);

                // Three local wake-ups (by reference, and through a clone).
                let w = slot.take().expect("parked");
                w.wake_by_ref();
                let second = w.clone();
                second.wake();
                w.wake_by_ref();
                wait_all_tasks_blocked().await?;
                assert_eq!(polls.get(), 2, "three local wake-ups before it ran: polled once");

                // Two wake-ups from another thread while the runtime is busy
                // (this task is running): one entry in the remote queue.
                let w = slot.take().expect("parked again");
                thread::scope(|s| {
                    s.spawn(|| {
                        w.wake_by_ref();
                        w.wake_by_ref();
                    });
                });
                wait_all_tasks_blocked().await?;
                assert_eq!(polls.get(), 3, "two remote wake-ups before it ran: polled once");

                // One local and one remote.
                let w = slot.take().expect("parked again");
                w.wake_by_ref();
                thread::scope(|s| {
                    s.spawn(|| w.wake_by_ref());
                });
                wait_all_tasks_blocked().await?;
                assert_eq!(polls.get(), 4, "a local and a remote wake-up before it ran: polled once");

                // Remote first, then local.
                let w = slot.take().expect("parked again");
                thread::scope(|s| {
                    s.spawn(|| w.wake_by_ref());
                });
                w.wake_by_ref();
                wait_all_tasks_blocked().await?;
                assert_eq!(polls.get(), 5, "a remote and a local wake-up before it ran: polled once");

                release.set(true);
                slot.take().expect("parked again").wake();
                wait_all_tasks_blocked().await?;
                assert_eq!(polls.get(), 6);
                Ok::<_, BoxError>(polls.get())
            }));
            (out.map_err(|e| e.to_string()), report)
        });
        assert_eq!(out, Ok(Some(6)), "seed {seed}");
        assert_eq!((report.tasks_left, report.timers_left, report.task_allocations_left), (0, 0, 0), "seed {seed}");
    }
}

/// Wakes itself during each poll, `times` times, logging each poll.
struct SelfWaking {
    name: char,
    left: u32,
    log: Rc<RefCell<Vec<char>>>,
}

impl Future for SelfWaking {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.log.borrow_mut().push(self.name);
        if self.left == 0 {
            return Poll::Ready(());
        }
        self.left -= 1;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[test]
fn local_wake_during_own_poll_reschedules_it_for_next_pass() {
    const TIMES: u32 = 50;
    for seed in 0..16 {
        let log = bounded(Duration::from_secs(20), move || {
            let log: Rc<RefCell<Vec<char>>> = Rc::default();
            let l = log.clone();
            let (out, report) = Builder::new().seed(seed).run_with_report(open_nursery(|n| async move {
                n.start_soon(SelfWaking { name: 'a', left: TIMES, log: l.clone() })?;
                n.start_soon(SelfWaking { name: 'b', left: TIMES, log: l.clone() })?;
                Ok::<_, BoxError>(())
            }));
            assert!(out.is_ok());
            assert_eq!((report.tasks_left, report.timers_left, report.task_allocations_left), (0, 0, 0));
            log.take()
        });
        // Each task is polled TIMES + 1 times: a self wake-up is neither
        // lost nor doubled.
        assert_eq!(log.iter().filter(|&&c| c == 'a').count(), TIMES as usize + 1, "seed {seed}: {log:?}");
        assert_eq!(log.iter().filter(|&&c| c == 'b').count(), TIMES as usize + 1, "seed {seed}: {log:?}");
        // Both were spawned in the same pass, and a task that wakes itself
        // runs again in the *next* pass, not the current one: every pass
        // runs each exactly once, in one order or the other.
        for (i, pair) in log.chunks(2).enumerate() {
            let mut p = pair.to_vec();
            p.sort();
            assert_eq!(p, ['a', 'b'], "seed {seed}: pass {i} ran {pair:?}; log {log:?}");
        }
        // Over 51 passes with a coin flip each, both orders show up.
        let forwards = log.chunks(2).filter(|p| p[0] == 'a').count();
        assert!(forwards > 0 && forwards < log.len() / 2, "seed {seed}: batch order never varied: {log:?}");
    }
}
