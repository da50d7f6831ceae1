//! Cross-shard cancel latency (issue 13's goal: p99 ≤ 50 µs when the
//! target shard is idle). Not a timed test: it measures and prints, and is
//! ignored by default. Run it in release:
//!
//! ```text
//! cargo test --release --test sharded_remote_latency -- --ignored --nocapture
//! ```
//!
//! Shard 0 opens a nursery with one child on shard 1 that sleeps forever;
//! once the child runs, shard 0 sleeps 1 ms of real time (shard 1 parks in
//! its I/O wait), then reads the clock and cancels the nursery's scope.
//! The child reads the clock when its `sleep_forever` returns `Cancelled`.
//! The latency is the difference: the owner's proxy noticing the cancel in
//! its next pass, the one cancel message, the target waking from
//! `epoll_wait`, cancelling the group's scope and polling the child.
//!
//! Beside it, the floor: the same round with no runtime at all, one plain
//! thread blocked in `mio::Poll::poll` and another poking its
//! `mio::Waker` (one eventfd write) after the same 1 ms of sleep. On a
//! virtual machine the floor is the cost of waking an idle virtual CPU.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use trioxide::{checkpoint, open_nursery, sleep_forever, BoxError, ShardedBuilder};

const ROUNDS: usize = 2000;

fn pin_to(core: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes within it;
    // sched_setaffinity(0, ..) only changes the calling thread's affinity.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn report(what: &str, pin: bool, lat: &[Duration]) {
    let mut us: Vec<f64> = lat.iter().map(|d| d.as_secs_f64() * 1e6).collect();
    us.sort_by(f64::total_cmp);
    let q = |p: f64| us[((us.len() - 1) as f64 * p).round() as usize];
    println!(
        "{what}, pinned={pin}, {ROUNDS} rounds: p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        q(0.5),
        q(0.9),
        q(0.99),
        us[us.len() - 1]
    );
}

/// The floor: an eventfd poke from one plain thread to another blocked in
/// `mio::Poll::poll`, timed the same way.
fn raw_wake_latency(pin: bool) -> Vec<Duration> {
    const WAKE: mio::Token = mio::Token(0);
    let mut poll = mio::Poll::new().expect("epoll");
    let waker = Arc::new(mio::Waker::new(poll.registry(), WAKE).expect("eventfd"));
    let t0: Arc<Mutex<Option<Instant>>> = Arc::default();
    let t0w = t0.clone();
    let poker = std::thread::spawn(move || {
        if pin {
            pin_to(0);
        }
        for _ in 0..ROUNDS {
            std::thread::sleep(Duration::from_millis(1)); // the other thread parks
            *t0w.lock().unwrap() = Some(Instant::now());
            waker.wake().expect("eventfd write");
            // One poke per round: wait until it was seen, so that two
            // pokes never merge into one wake-up on a slow machine.
            while t0w.lock().unwrap().is_some() {
                std::thread::yield_now();
            }
        }
    });
    if pin {
        pin_to(1);
    }
    let mut events = mio::Events::with_capacity(8);
    let mut lat = Vec::with_capacity(ROUNDS);
    while lat.len() < ROUNDS {
        poll.poll(&mut events, None).expect("epoll_wait");
        let now = Instant::now();
        if let Some(t) = t0.lock().unwrap().take() {
            lat.push(now.duration_since(t));
        }
    }
    poker.join().unwrap();
    lat
}

#[test]
#[ignore = "measurement; run in release with --ignored --nocapture"]
fn cross_shard_cancel_latency_to_an_idle_shard() {
    for pin in [false, true] {
        report("floor: eventfd poke -> thread in epoll_wait wakes", pin, &raw_wake_latency(pin));
        let lat = ShardedBuilder::new(2)
            .pin_to_cores(pin)
            .run(|shard| async move {
                let mut lat = Vec::with_capacity(ROUNDS);
                if shard.index() == 1 {
                    return Ok::<_, BoxError>(lat);
                }
                for _ in 0..ROUNDS {
                    let running = Arc::new(AtomicBool::new(false));
                    let seen: Arc<Mutex<Option<Instant>>> = Arc::default();
                    let (r, s) = (running.clone(), seen.clone());
                    let t0 = std::cell::Cell::new(None);
                    let t0r = &t0;
                    let running = &running;
                    open_nursery(|n| async move {
                        n.start_soon_on(1, move || async move {
                            r.store(true, Ordering::SeqCst);
                            let out = sleep_forever().await;
                            *s.lock().unwrap() = Some(Instant::now());
                            out.map(|_| ())
                        })?;
                        while !running.load(Ordering::SeqCst) {
                            checkpoint().await?;
                        }
                        std::thread::sleep(Duration::from_millis(1)); // shard 1 parks
                        t0r.set(Some(Instant::now()));
                        n.cancel_scope().cancel();
                        Ok::<_, BoxError>(())
                    })
                    .await?;
                    let t1 = seen.lock().unwrap().expect("the child saw its cancellation");
                    lat.push(t1.duration_since(t0.get().expect("cancelled")));
                }
                Ok(lat)
            })
            .unwrap()
            .remove(0);
        report("cancel -> remote child sees Cancelled, idle target", pin, &lat);
    }
}
