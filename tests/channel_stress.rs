//! Many senders and receivers hammering one memory channel under random
//! cancellation, on virtual time: every value must be received exactly
//! once (no loss, no duplicate), whatever the scheduler's order.
//!
//! * 20 senders each send their own range of values. Every send runs in a
//!   cancel scope with a random deadline (sometimes none); a send that was
//!   cancelled gives its value back in its `SendError`, and the sender
//!   retries it until it goes through.
//! * 10 receivers mix the ways of receiving: `receive` under a random
//!   deadline, the `Stream` impl under a random deadline, and a receive
//!   future polled once, left queued while the task sleeps, then either
//!   awaited or dropped (if a value was handed to it meanwhile, its `Drop`
//!   must pass the value on).
//! * A chaos task cancels the current scope of a random sender or receiver
//!   every few virtual microseconds.
//!
//! The random choices come from a PRNG seeded per run, the scheduler from
//! `Builder::seed`; each configuration runs under several seeds. At the end
//! the channel has no waiter and an empty buffer.

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use futures_core::Stream;
use trioxide::channel::{MemoryReceiveChannel, MemorySendChannel, ReceiveError, SendErrorKind};
use trioxide::{
    checkpoint, fail_after, open_memory_channel, open_nursery, sleep, BoxError, Builder, CancelScope, Cancelled,
    MockClock,
};

const SENDERS: usize = 20;
const RECEIVERS: usize = 10;
const VALUES_PER_SENDER: u32 = 100;
/// Deadlines are drawn from 0..MAX_DEADLINE_US virtual microseconds: short
/// enough that a good share of blocked operations time out, and 0 now and
/// then, which cancels the operation at its entry checkpoint.
const MAX_DEADLINE_US: u64 = 40;
/// Bounds the virtual time of a run: a lost wake-up or value fails the run
/// instead of hanging it. A run takes about 2 ms of virtual time; the chaos
/// task keeps the clock moving in steps of ~10 µs, so a generous guard would
/// cost minutes of real time to reach.
const HANG_GUARD: Duration = Duration::from_millis(100);

/// SplitMix64: small, seedable, good enough to pick deadlines.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the tasks of one run share.
struct Shared {
    rng: RefCell<Rng>,
    /// The cancel scope each task is running an operation in, for chaos.
    scopes: RefCell<Vec<Option<CancelScope>>>,
    received: RefCell<Vec<u32>>,
    tasks_left: Cell<usize>,
    cancelled_sends: Cell<u32>,
    cancelled_receives: Cell<u32>,
    dropped_receives: Cell<u32>,
    put_back: Cell<u32>,
}

impl Shared {
    fn rand(&self, n: u64) -> u64 {
        self.rng.borrow_mut().below(n)
    }

    /// A scope with a random deadline, or (one time in four) none; it is
    /// registered for the chaos task under `slot`.
    fn scope(&self, slot: usize) -> CancelScope {
        let scope = if self.rand(4) == 0 {
            CancelScope::new()
        } else {
            CancelScope::with_relative_deadline(Duration::from_micros(self.rand(MAX_DEADLINE_US)))
        };
        self.scopes.borrow_mut()[slot] = Some(scope.clone());
        scope
    }

    fn unregister(&self, slot: usize) {
        self.scopes.borrow_mut()[slot] = None;
    }
}

fn bump(c: &Cell<u32>) {
    c.set(c.get() + 1);
}

async fn sender(sh: Rc<Shared>, slot: usize, tx: MemorySendChannel<u32>) -> Result<(), BoxError> {
    let first = slot as u32 * VALUES_PER_SENDER;
    for v in first..first + VALUES_PER_SENDER {
        let mut value = v;
        loop {
            let scope = sh.scope(slot);
            let mut back = None;
            let out = scope
                .run(async {
                    match tx.send(value).await {
                        Ok(()) => Ok(()),
                        Err(e) => {
                            assert_eq!(e.kind(), SendErrorKind::Cancelled, "only cancellation can stop a send here");
                            back = Some(e.into_inner());
                            Err(Cancelled)
                        }
                    }
                })
                .await;
            sh.unregister(slot);
            match out {
                Ok(Some(())) => break,
                Ok(None) => {
                    bump(&sh.cancelled_sends);
                    // The value came back: retry the same one.
                    value = back.ok_or("a cancelled send did not return its value")?;
                    assert_eq!(value, v);
                }
                Err(c) => return Err(c.into()),
            }
        }
        // Now and then a slow producer, so that receivers block (and get
        // cancelled) too.
        match sh.rand(8) {
            0 => checkpoint().await?,
            1 => sleep(Duration::from_micros(sh.rand(2 * MAX_DEADLINE_US))).await?,
            _ => {}
        }
    }
    Ok(())
}

/// The stream's next item.
fn next<T>(rx: &mut MemoryReceiveChannel<T>) -> impl Future<Output = Option<Result<T, ReceiveError>>> + '_ {
    poll_fn(move |cx| Pin::new(&mut *rx).poll_next(cx))
}

/// Records one receive's outcome: `Ok(None)` means the operation's own
/// scope caught its cancellation. Returns false at the end of the channel,
/// and an error if a cancellation came from outside (the run's hang guard):
/// retrying then would spin, since every checkpoint reports it.
fn record(sh: &Shared, out: Result<Option<u32>, ReceiveError>) -> Result<bool, BoxError> {
    match out {
        Ok(Some(v)) => sh.received.borrow_mut().push(v),
        Ok(None) => bump(&sh.cancelled_receives),
        Err(ReceiveError::EndOfChannel) => return Ok(false),
        Err(ReceiveError::Cancelled) => return Err(Cancelled.into()),
        Err(ReceiveError::Closed) => panic!("nobody closes a receive handle in use"),
    }
    Ok(true)
}

async fn receiver(sh: Rc<Shared>, slot: usize, mut rx: MemoryReceiveChannel<u32>) -> Result<(), BoxError> {
    loop {
        let more = match sh.rand(3) {
            0 => {
                let scope = sh.scope(slot);
                let out = scope.run(rx.receive()).await;
                sh.unregister(slot);
                record(&sh, out)?
            }
            1 => {
                let scope = sh.scope(slot);
                let out = scope.run(async { Ok::<_, Cancelled>(next(&mut rx).await) }).await;
                sh.unregister(slot);
                match out {
                    // The stream yields Err(Cancelled) rather than ending
                    // the body, so the scope cannot catch it: whose
                    // cancellation it was is the scope's to say.
                    Ok(Some(Some(Err(ReceiveError::Cancelled)))) if scope.cancel_called() => record(&sh, Ok(None))?,
                    Ok(Some(Some(r))) => record(&sh, r.map(Some))?,
                    Ok(Some(None)) => false,
                    Ok(None) => record(&sh, Ok(None))?,
                    Err(c) => return Err(c.into()),
                }
            }
            _ => {
                // Queue a receive, let time pass, then take or drop it.
                let mut f = rx.receive();
                let first = poll_fn(|cx| Poll::Ready(Pin::new(&mut f).poll(cx))).await;
                match first {
                    Poll::Ready(r) => record(&sh, r.map(Some))?,
                    Poll::Pending => {
                        sleep(Duration::from_micros(sh.rand(MAX_DEADLINE_US))).await?;
                        if sh.rand(2) == 0 {
                            let before = rx.statistics().current_buffer_used;
                            drop(f);
                            bump(&sh.dropped_receives);
                            if rx.statistics().current_buffer_used > before {
                                // It had been handed a value: put back.
                                bump(&sh.put_back);
                            }
                            true
                        } else {
                            let r = f.await;
                            record(&sh, r.map(Some))?
                        }
                    }
                }
            }
        };
        if !more {
            return Ok(());
        }
    }
}

/// Cancels the current operation of a random task now and then, until
/// every sender and receiver is done.
async fn chaos(sh: Rc<Shared>) -> Result<(), BoxError> {
    while sh.tasks_left.get() > 0 {
        sleep(Duration::from_micros(1 + sh.rand(MAX_DEADLINE_US / 2))).await?;
        let slot = sh.rand((SENDERS + RECEIVERS) as u64) as usize;
        let scope = sh.scopes.borrow()[slot].clone();
        if let Some(scope) = scope {
            scope.cancel();
        }
    }
    Ok(())
}

/// Counts of what happened in one run.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    cancelled_sends: u32,
    cancelled_receives: u32,
    dropped_receives: u32,
    put_back: u32,
}

fn stress(seed: u64, capacity: usize) -> Counts {
    let clock = MockClock::new();
    clock.set_autojump_threshold(Some(Duration::ZERO));
    let sh = Rc::new(Shared {
        rng: RefCell::new(Rng(seed.wrapping_mul(1000).wrapping_add(capacity as u64))),
        scopes: RefCell::new(vec![None; SENDERS + RECEIVERS]),
        received: RefCell::new(Vec::new()),
        tasks_left: Cell::new(SENDERS + RECEIVERS),
        cancelled_sends: Cell::new(0),
        cancelled_receives: Cell::new(0),
        dropped_receives: Cell::new(0),
        put_back: Cell::new(0),
    });
    let s = sh.clone();
    let main = async move {
        let (tx, rx) = open_memory_channel::<u32>(capacity);
        // A closed clone: it reads the statistics without keeping the
        // channel open (the receivers must see its end).
        let probe = tx.clone();
        probe.close();
        open_nursery(|n| async move {
            for slot in 0..SENDERS {
                let (sh, tx) = (s.clone(), tx.clone());
                n.start_soon(async move {
                    let r = sender(sh.clone(), slot, tx).await;
                    sh.tasks_left.set(sh.tasks_left.get() - 1);
                    r
                })?;
            }
            for slot in SENDERS..SENDERS + RECEIVERS {
                let (sh, rx) = (s.clone(), rx.clone());
                n.start_soon(async move {
                    let r = receiver(sh.clone(), slot, rx).await;
                    sh.tasks_left.set(sh.tasks_left.get() - 1);
                    r
                })?;
            }
            n.start_soon(chaos(s.clone()))?;
            Ok::<_, BoxError>(())
        })
        .await?;
        let stats = probe.statistics();
        assert_eq!(
            (stats.current_buffer_used, stats.tasks_waiting_send, stats.tasks_waiting_receive),
            (0, 0, 0),
            "the channel is empty and nobody waits"
        );
        assert_eq!((stats.open_send_channels, stats.open_receive_channels), (0, 0));
        Ok::<_, BoxError>(())
    };
    let (out, report) = Builder::new().seed(seed).clock(clock).run_with_report(fail_after(HANG_GUARD, main));
    if let Err(e) = out {
        panic!("run failed (seed {seed}, capacity {capacity}): {e}");
    }
    assert_eq!(report.tasks_left, 0);
    assert_eq!(report.timers_left, 0);
    assert_eq!(report.task_allocations_left, 0);

    let mut got = sh.received.borrow().clone();
    got.sort_unstable();
    let total = SENDERS as u32 * VALUES_PER_SENDER;
    assert_eq!(got.len(), total as usize, "seed {seed}, capacity {capacity}: lost or duplicated values");
    assert!(got.iter().copied().eq(0..total), "seed {seed}, capacity {capacity}: every value exactly once");
    Counts {
        cancelled_sends: sh.cancelled_sends.get(),
        cancelled_receives: sh.cancelled_receives.get(),
        dropped_receives: sh.dropped_receives.get(),
        put_back: sh.put_back.get(),
    }
}

fn stress_seeds(capacity: usize) {
    let mut total = Counts::default();
    for seed in 0..8 {
        let c = stress(seed, capacity);
        total.cancelled_sends += c.cancelled_sends;
        total.cancelled_receives += c.cancelled_receives;
        total.dropped_receives += c.dropped_receives;
        total.put_back += c.put_back;
    }
    // The test means something only if every path was taken.
    assert!(total.cancelled_sends > 0, "{total:?}");
    assert!(total.cancelled_receives > 0, "{total:?}");
    assert!(total.dropped_receives > 0, "{total:?}");
    assert!(total.put_back > 0, "{total:?}");
}

#[test]
fn stress_bounded_channel_under_random_cancellation_delivers_every_value_once() {
    stress_seeds(3);
}

#[test]
fn stress_rendezvous_channel_under_random_cancellation_delivers_every_value_once() {
    stress_seeds(0);
}
